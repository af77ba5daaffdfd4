// Package lookupcache keeps recently validated access tokens in memory, so
// that the guard's hot path does not reach the store for every request.
//
// Only positive access-token lookups are cached, each for at most the
// configured TTL and never past the token's own expiry. Revocations made
// through this node (RevokeToken, RevokeFamily, and ConsumeRefreshToken,
// whose replay leads to a family revocation) evict at once; a revocation
// made on another node is seen here after at most the TTL, which is the
// price of the cache and why the TTL should be short (seconds).
package lookupcache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// shardCount spreads keys over independent locks. Keys are HMAC outputs,
// so their first hex digits are already uniformly distributed.
const shardCount = 64

// Cache is a stores.TokenStore that answers access-token lookups from
// memory when it can and passes everything else to the store it wraps.
type Cache struct {
	inner    stores.TokenStore
	ttl      time.Duration
	perShard int
	now      func() time.Time

	// epoch counts evictions. A lookup that raced with one (read the store
	// before the revocation, finishing after it) must not cache what it
	// read.
	epoch  atomic.Uint64
	shards [shardCount]shard

	hits, misses atomic.Uint64

	// trustUntil, when not zero, is the unix nanosecond past which no
	// cached entry answers: a Follower moves it forward with every
	// successful read of the revocation feed (see feed.go).
	trustUntil atomic.Int64
}

// Stats returns how many access-token lookups were answered from memory
// (hits) and how many went to the wrapped store (misses).
func (c *Cache) Stats() (hits, misses uint64) { return c.hits.Load(), c.misses.Load() }

type shard struct {
	mu      sync.RWMutex
	entries map[string]entry
}

type entry struct {
	tok   *stores.Token
	until int64 // unix nanoseconds
}

// New wraps inner. Access tokens found by LookupToken are kept for at most
// ttl and at most maxEntries of them at once (rounded up to a multiple of
// 64). A ttl or maxEntries of zero or less disables caching.
func New(inner stores.TokenStore, ttl time.Duration, maxEntries int) *Cache {
	c := &Cache{inner: inner, ttl: ttl, now: time.Now}
	if ttl > 0 && maxEntries > 0 {
		c.perShard = (maxEntries + shardCount - 1) / shardCount
	}
	for i := range c.shards {
		c.shards[i].entries = make(map[string]entry)
	}
	return c
}

// shardOf picks a shard from the key's first two characters.
func (c *Cache) shardOf(key string) *shard {
	var h uint
	if len(key) >= 2 {
		h = uint(key[0])<<8 | uint(key[1])
	} else if len(key) == 1 {
		h = uint(key[0])
	}
	// Mix so that hex digits (16 values per character) cover all shards.
	h = h * 0x9E3779B1 >> 7
	return &c.shards[h%shardCount]
}

// Len returns how many tokens are cached, expired ones included until they
// are evicted.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}

// LookupToken answers access-token lookups from memory when it can.
func (c *Cache) LookupToken(ctx context.Context, kind stores.Kind, key string) (*stores.Token, error) {
	if kind != stores.AccessToken || c.perShard == 0 {
		return c.inner.LookupToken(ctx, kind, key)
	}
	s := c.shardOf(key)
	now := c.now()
	s.mu.RLock()
	e, ok := s.entries[key]
	s.mu.RUnlock()
	if ok && now.UnixNano() < e.until && c.trusted(now) {
		c.hits.Add(1)
		t := *e.tok // callers may keep or change what they get
		t.OIDC = t.OIDC.Clone()
		return &t, nil
	}
	c.misses.Add(1)
	epoch := c.epoch.Load()
	tok, err := c.inner.LookupToken(ctx, kind, key)
	if err != nil || tok == nil {
		if ok {
			c.evictKey(s, key, e.until)
		}
		return tok, err
	}
	until := now.Add(c.ttl)
	if tok.ExpiresAt.Before(until) {
		until = tok.ExpiresAt
	}
	if until.After(now) {
		stored := *tok
		stored.OIDC = tok.OIDC.Clone()
		s.mu.Lock()
		if c.epoch.Load() == epoch {
			if _, exists := s.entries[key]; !exists && len(s.entries) >= c.perShard {
				s.makeRoom(now.UnixNano())
			}
			s.entries[key] = entry{tok: &stored, until: until.UnixNano()}
		}
		s.mu.Unlock()
	}
	return tok, nil
}

// makeRoom samples a few entries (Go randomises map iteration) and drops
// the expired ones among them, or else the first one sampled: O(1), and
// close enough to LRU for a cache whose entries live seconds. The caller
// holds the lock.
func (s *shard) makeRoom(now int64) {
	const sample = 8
	var first string
	seen, dropped := 0, false
	for k, e := range s.entries {
		if seen == 0 {
			first = k
		}
		if e.until <= now {
			delete(s.entries, k)
			dropped = true
		}
		if seen++; seen == sample {
			break
		}
	}
	if !dropped && seen > 0 {
		delete(s.entries, first)
	}
}

// evictKey drops key if it still holds the entry seen (until).
func (c *Cache) evictKey(s *shard, key string, until int64) {
	s.mu.Lock()
	if e, ok := s.entries[key]; ok && e.until == until {
		delete(s.entries, key)
	}
	s.mu.Unlock()
}

// evict drops one key at once.
func (c *Cache) evict(key string) {
	c.epoch.Add(1)
	s := c.shardOf(key)
	s.mu.Lock()
	delete(s.entries, key)
	s.mu.Unlock()
}

// evictFamily drops every cached token of a family. Revocations are rare,
// so a scan beats keeping a family index on the hot path.
func (c *Cache) evictFamily(family string) {
	c.epoch.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.entries {
			if e.tok.Family == family {
				delete(s.entries, k)
			}
		}
		s.mu.Unlock()
	}
}

// RevokeToken revokes in the store and evicts the token.
func (c *Cache) RevokeToken(ctx context.Context, kind stores.Kind, key string) error {
	err := c.inner.RevokeToken(ctx, kind, key)
	// Evict even when the store failed: the token may be gone there.
	c.evict(key)
	return err
}

// RevokeFamily revokes in the store and evicts the family's tokens.
func (c *Cache) RevokeFamily(ctx context.Context, family string, until time.Time) error {
	err := c.inner.RevokeFamily(ctx, family, until)
	c.evictFamily(family)
	return err
}

// ConsumeRefreshToken rotates in the store and evicts the family's access
// tokens: a replay (ErrConsumed) is about to revoke the family, and after a
// rotation the old access tokens are better checked against the store.
func (c *Cache) ConsumeRefreshToken(ctx context.Context, key string) (*stores.Token, error) {
	tok, err := c.inner.ConsumeRefreshToken(ctx, key)
	if tok != nil && tok.Family != "" {
		c.evictFamily(tok.Family)
	}
	return tok, err
}

// InsertTokens passes through.
func (c *Cache) InsertTokens(ctx context.Context, tokens ...*stores.Token) error {
	return c.inner.InsertTokens(ctx, tokens...)
}

// PurgeExpiredTokens passes through; expired entries never answer and are
// dropped as room is needed.
func (c *Cache) PurgeExpiredTokens(ctx context.Context, batch int) (int64, error) {
	return c.inner.PurgeExpiredTokens(ctx, batch)
}

// Interface guards
var _ stores.TokenStore = (*Cache)(nil)

// RevokeSubject revokes in the store, when it can, and evicts the tokens of
// that resource owner and/or client.
func (c *Cache) RevokeSubject(ctx context.Context, subject, clientID string, until time.Time) (int64, error) {
	sr, ok := c.inner.(stores.SubjectRevoker)
	if !ok {
		return 0, stores.ErrUnsupported
	}
	n, err := sr.RevokeSubject(ctx, subject, clientID, until)
	c.evictSubject(subject, clientID)
	return n, err
}

var _ stores.SubjectRevoker = (*Cache)(nil)

// SingleUse implements stores.SingleUseWrapper: the single-use values of
// the store behind the cache, if it keeps any. They are never cached.
func (c *Cache) SingleUse() (stores.SingleUse, bool) {
	return stores.SingleUseOf(c.inner)
}
