package dpop

import (
	"crypto/sha256"
	"sync"
	"time"
)

// ReplayCache remembers the jti of every accepted proof until the proof
// would be refused as too old anyway (RFC 9449 §11.1). Entries are keyed by
// a hash of the key thumbprint and the jti, so one client cannot exhaust
// another's jti space, and memory is bounded: when a shard is full of live
// entries, Add refuses the proof instead of forgetting one.
type ReplayCache struct {
	shards []replayShard
	per    int
}

type replayKey [16]byte

type replayShard struct {
	mu     sync.Mutex
	m      map[replayKey]int64 // expiry, unix nanoseconds
	minExp int64               // earliest expiry in m; sweep only after it
}

// NewReplayCache holds up to max entries in shards shards (defaults 1<<20
// and 64); about 60 bytes an entry.
func NewReplayCache(max, shards int) *ReplayCache {
	if shards <= 0 {
		shards = 64
	}
	if max <= 0 {
		max = 1 << 20
	}
	per := max / shards
	if per < 1 {
		per = 1
	}
	c := &ReplayCache{shards: make([]replayShard, shards), per: per}
	for i := range c.shards {
		c.shards[i].m = make(map[replayKey]int64)
	}
	return c
}

// Add records jti for the key jkt until exp, or says it was seen.
func (c *ReplayCache) Add(jkt, jti string, exp, now time.Time) error {
	h := sha256.New()
	h.Write([]byte(jkt))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var sum [32]byte
	var k replayKey
	copy(k[:], h.Sum(sum[:0]))
	s := &c.shards[(uint(k[0])<<8|uint(k[1]))%uint(len(c.shards))]
	n, e := now.UnixNano(), exp.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[k]; ok && old > n {
		return invalid("replay", "DPoP proof jti has been used before")
	}
	if len(s.m) >= c.per && n >= s.minExp {
		s.sweep(n)
	}
	if len(s.m) >= c.per {
		return &Error{Code: CodeInvalidProof, Reason: "replay_cache_full", Description: "DPoP proofs cannot be accepted right now; retry shortly"}
	}
	s.m[k] = e
	if len(s.m) == 1 || e < s.minExp {
		s.minExp = e
	}
	return nil
}

func (s *replayShard) sweep(n int64) {
	min := int64(1<<63 - 1)
	for k, e := range s.m {
		if e <= n {
			delete(s.m, k)
		} else if e < min {
			min = e
		}
	}
	s.minExp = min
}

// Len is the number of entries held, expired ones not yet swept included.
func (c *ReplayCache) Len() int {
	t := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		t += len(c.shards[i].m)
		c.shards[i].mu.Unlock()
	}
	return t
}
