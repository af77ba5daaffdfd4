package validator

import (
	"crypto/sha256"
	"sync"
	"time"
)

// Memo remembers what a source learnt of tokens (a verified signature, an
// introspection answer) by the token's SHA-256, never the token itself,
// each until a deadline, at most a fixed number of them. It is safe for
// concurrent use.
type Memo[V any] struct {
	max   int
	mu    sync.RWMutex
	m     map[[sha256.Size]byte]memoEntry[V]
	swept time.Time // the last sweep of expired entries, under mu
}

type memoEntry[V any] struct {
	v     V
	until time.Time
}

// NewMemo returns a Memo of at most max entries.
func NewMemo[V any](max int) *Memo[V] {
	return &Memo[V]{max: max, m: make(map[[sha256.Size]byte]memoEntry[V])}
}

// Get returns what is remembered of the token with hash key and until
// when, expired or not: the caller decides what an expired entry means.
func (m *Memo[V]) Get(key [sha256.Size]byte) (v V, until time.Time, ok bool) {
	m.mu.RLock()
	e, ok := m.m[key]
	m.mu.RUnlock()
	return e.v, e.until, ok
}

// Put remembers v for the token with hash key until the given time. A full
// memo drops its expired entries (at most once a minute: a sweep is a
// scan), then arbitrary ones (Go randomises map iteration) until there is
// room, which only costs them another check.
func (m *Memo[V]) Put(key [sha256.Size]byte, v V, until, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.m) >= m.max {
		if now.Sub(m.swept) >= time.Minute {
			m.swept = now
			for k, e := range m.m {
				if !now.Before(e.until) {
					delete(m.m, k)
				}
			}
		}
		for k := range m.m {
			if len(m.m) < m.max {
				break
			}
			delete(m.m, k)
		}
	}
	m.m[key] = memoEntry[V]{v: v, until: until}
}

// Len returns how many entries the memo holds, expired ones included.
func (m *Memo[V]) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.m)
}
