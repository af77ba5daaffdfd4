package lookupcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// fakeStore is an in-memory TokenStore that counts lookups.
type fakeStore struct {
	mu      sync.Mutex
	tokens  map[string]*stores.Token
	used    map[string]bool
	lookups atomic.Int64
	fail    error
	// during runs inside LookupToken after it read the token.
	during func()
}

func newFake() *fakeStore {
	return &fakeStore{tokens: map[string]*stores.Token{}, used: map[string]bool{}}
}

func (f *fakeStore) InsertTokens(_ context.Context, tokens ...*stores.Token) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range tokens {
		c := *t
		f.tokens[t.Key] = &c
	}
	return nil
}

func (f *fakeStore) LookupToken(_ context.Context, kind stores.Kind, key string) (*stores.Token, error) {
	f.lookups.Add(1)
	f.mu.Lock()
	t, ok := f.tokens[key]
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	if !ok || t.Kind != kind || !time.Now().Before(t.ExpiresAt) || f.used[key] {
		return nil, stores.ErrNotFound
	}
	c := *t
	if f.during != nil {
		f.during()
	}
	return &c, nil
}

func (f *fakeStore) ConsumeRefreshToken(_ context.Context, key string) (*stores.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tokens[key]
	if !ok || t.Kind != stores.RefreshToken {
		return nil, stores.ErrNotFound
	}
	c := *t
	if f.used[key] {
		return &c, stores.ErrConsumed
	}
	f.used[key] = true
	return &c, nil
}

func (f *fakeStore) RevokeToken(_ context.Context, _ stores.Kind, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tokens, key)
	return nil
}

func (f *fakeStore) RevokeFamily(_ context.Context, family string, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, t := range f.tokens {
		if t.Family == family {
			delete(f.tokens, k)
		}
	}
	return nil
}

func (f *fakeStore) PurgeExpiredTokens(context.Context, int) (int64, error) { return 0, nil }

func token(kind stores.Kind, family string, ttl time.Duration) *stores.Token {
	n := time.Now()
	return &stores.Token{Key: storetest.Key(), Kind: kind, ClientID: "c", Subject: "alice", Scope: "read",
		Family: family, IssuedAt: n, ExpiresAt: n.Add(ttl)}
}

var ctx = context.Background()

func mustLookup(t *testing.T, c *Cache, tok *stores.Token) {
	t.Helper()
	got, err := c.LookupToken(ctx, tok.Kind, tok.Key)
	if err != nil {
		t.Fatalf("LookupToken: %v", err)
	}
	if got.Key != tok.Key || got.Family != tok.Family || got.Subject != tok.Subject {
		t.Fatalf("got %+v, want %+v", got, tok)
	}
}

func TestHits(t *testing.T) {
	f := newFake()
	c := New(f, time.Minute, 100)
	at := token(stores.AccessToken, "fam", time.Hour)
	_ = c.InsertTokens(ctx, at)
	for i := 0; i < 10; i++ {
		mustLookup(t, c, at)
	}
	if n := f.lookups.Load(); n != 1 {
		t.Fatalf("10 lookups reached the store %d times, want 1", n)
	}
	// A caller changing its copy does not change the cache.
	got, _ := c.LookupToken(ctx, stores.AccessToken, at.Key)
	got.Subject = "mallory"
	mustLookup(t, c, at)
}

func TestOnlyPositiveAccessLookupsCached(t *testing.T) {
	f := newFake()
	c := New(f, time.Minute, 100)
	rt := token(stores.RefreshToken, "fam", time.Hour)
	_ = c.InsertTokens(ctx, rt)
	for i := 0; i < 3; i++ {
		mustLookup(t, c, rt)
	}
	unknown := storetest.Key()
	for i := 0; i < 3; i++ {
		if _, err := c.LookupToken(ctx, stores.AccessToken, unknown); !errors.Is(err, stores.ErrNotFound) {
			t.Fatalf("unknown token: %v", err)
		}
	}
	f.fail = stores.Unavailable(errors.New("down"))
	if _, err := c.LookupToken(ctx, stores.AccessToken, unknown); !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("store down: %v", err)
	}
	if n := f.lookups.Load(); n != 7 {
		t.Fatalf("store saw %d lookups, want all 7 (refresh tokens, misses and errors are not cached)", n)
	}
}

func TestExpiry(t *testing.T) {
	f := newFake()
	c := New(f, time.Minute, 100)
	now := time.Now()
	c.now = func() time.Time { return now }

	long := token(stores.AccessToken, "f", time.Hour)
	short := token(stores.AccessToken, "f", 10*time.Second)
	_ = c.InsertTokens(ctx, long, short)
	mustLookup(t, c, long)
	mustLookup(t, c, short)

	// Within both limits: hits.
	now = now.Add(5 * time.Second)
	mustLookup(t, c, long)
	mustLookup(t, c, short)
	if n := f.lookups.Load(); n != 2 {
		t.Fatalf("store saw %d lookups, want 2", n)
	}
	// Past the short token's own life the cache does not answer for it,
	// though the TTL has not run out.
	now = now.Add(10 * time.Second)
	before := f.lookups.Load()
	_, _ = c.LookupToken(ctx, stores.AccessToken, short.Key)
	if f.lookups.Load() != before+1 {
		t.Fatal("a token past its expiry was answered from the cache")
	}
	// Past the TTL the long-lived token is looked up again.
	mustLookup(t, c, long)
	if f.lookups.Load() != before+1 {
		t.Fatal("long token missed before its TTL")
	}
	now = now.Add(time.Minute)
	mustLookup(t, c, long)
	if f.lookups.Load() != before+2 {
		t.Fatal("long token answered from the cache past the TTL")
	}
}

func TestRevokeEvicts(t *testing.T) {
	f := newFake()
	c := New(f, time.Hour, 100)
	a1 := token(stores.AccessToken, "fam-a", time.Hour)
	a2 := token(stores.AccessToken, "fam-a", time.Hour)
	b := token(stores.AccessToken, "fam-b", time.Hour)
	_ = c.InsertTokens(ctx, a1, a2, b)
	for _, tok := range []*stores.Token{a1, a2, b} {
		mustLookup(t, c, tok)
	}

	if err := c.RevokeToken(ctx, stores.AccessToken, a1.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LookupToken(ctx, stores.AccessToken, a1.Key); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("revoked token still answered: %v", err)
	}
	if err := c.RevokeFamily(ctx, "fam-a", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LookupToken(ctx, stores.AccessToken, a2.Key); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("token of a revoked family still answered: %v", err)
	}
	before := f.lookups.Load()
	mustLookup(t, c, b)
	if f.lookups.Load() != before {
		t.Fatal("revoking one family evicted another")
	}
}

func TestConsumeRefreshEvictsFamily(t *testing.T) {
	f := newFake()
	c := New(f, time.Hour, 100)
	at := token(stores.AccessToken, "fam", time.Hour)
	rt := token(stores.RefreshToken, "fam", time.Hour)
	_ = c.InsertTokens(ctx, at, rt)
	mustLookup(t, c, at)
	if _, err := c.ConsumeRefreshToken(ctx, rt.Key); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 0 {
		t.Fatalf("%d entries after rotating the family's refresh token", c.Len())
	}
	mustLookup(t, c, at)
	// A replay evicts too, before the caller revokes the family.
	if _, err := c.ConsumeRefreshToken(ctx, rt.Key); !errors.Is(err, stores.ErrConsumed) {
		t.Fatal(err)
	}
	if c.Len() != 0 {
		t.Fatal("replayed refresh token left the family cached")
	}
}

// TestRevokeDuringLookup: a lookup that read the store before a revocation
// and finishes after it must not put the revoked token in the cache.
func TestRevokeDuringLookup(t *testing.T) {
	f := newFake()
	c := New(f, time.Hour, 100)
	at := token(stores.AccessToken, "fam", time.Hour)
	_ = c.InsertTokens(ctx, at)
	f.during = func() {
		f.during = nil
		if err := c.RevokeToken(ctx, stores.AccessToken, at.Key); err != nil {
			t.Error(err)
		}
	}
	mustLookup(t, c, at) // read before the revocation: still answered once
	if _, err := c.LookupToken(ctx, stores.AccessToken, at.Key); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("revoked token cached by a racing lookup: %v", err)
	}
}

func TestBound(t *testing.T) {
	f := newFake()
	const max = 640
	c := New(f, time.Hour, max)
	var toks []*stores.Token
	for i := 0; i < 5*max; i++ {
		tok := token(stores.AccessToken, fmt.Sprintf("fam-%d", i), time.Hour)
		toks = append(toks, tok)
	}
	_ = f.InsertTokens(ctx, toks...)
	for _, tok := range toks {
		mustLookup(t, c, tok)
		if n := c.Len(); n > max {
			t.Fatalf("cache holds %d entries, bound %d", n, max)
		}
	}
	if n := c.Len(); n < max/2 {
		t.Fatalf("cache holds only %d of %d entries: shards badly balanced", n, max)
	}
	// Every token still answers, cached or not.
	for _, tok := range toks {
		mustLookup(t, c, tok)
	}
}

func TestDisabled(t *testing.T) {
	f := newFake()
	c := New(f, 0, 100)
	at := token(stores.AccessToken, "f", time.Hour)
	_ = c.InsertTokens(ctx, at)
	mustLookup(t, c, at)
	mustLookup(t, c, at)
	if f.lookups.Load() != 2 || c.Len() != 0 {
		t.Fatal("a zero TTL still caches")
	}
}

func TestConcurrent(t *testing.T) {
	f := newFake()
	c := New(f, time.Hour, 256)
	var toks []*stores.Token
	for i := 0; i < 100; i++ {
		toks = append(toks, token(stores.AccessToken, fmt.Sprintf("fam-%d", i%10), time.Hour))
	}
	_ = f.InsertTokens(ctx, toks...)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				tok := toks[(i*7+g)%len(toks)]
				if _, err := c.LookupToken(ctx, stores.AccessToken, tok.Key); err != nil && !errors.Is(err, stores.ErrNotFound) {
					t.Error(err)
					return
				}
				if i%500 == 0 {
					_ = c.RevokeFamily(ctx, fmt.Sprintf("fam-%d", g), time.Now().Add(time.Hour))
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkHit(b *testing.B) {
	f := newFake()
	c := New(f, time.Hour, 1000)
	at := token(stores.AccessToken, "f", time.Hour)
	_ = f.InsertTokens(ctx, at)
	_, _ = c.LookupToken(ctx, stores.AccessToken, at.Key)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = c.LookupToken(ctx, stores.AccessToken, at.Key)
		}
	})
}
