package cache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) stores.Store {
		return newEngine(t, Config{MaxMemoryMB: 64, Shards: 64})
	}, storetest.Options{})
}

func token(kind stores.Kind, family string, ttl time.Duration) *stores.Token {
	n := time.Now()
	return &stores.Token{
		Key: storetest.Key(), Kind: kind, ClientID: "client-1", Subject: "alice", Scope: "read write",
		Family: family, IssuedAt: n, ExpiresAt: n.Add(ttl),
	}
}

// A full cache evicts its oldest live records, counts them and warns, at most
// once a minute, without naming any key.
func TestFullCacheCountsAndWarns(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	e := newEngine(t, Config{MaxMemoryMB: 1, Shards: 1, Logger: zap.New(core)})
	ctx := context.Background()

	// Expired records pushed out make no noise.
	for i := 0; i < 20000; i++ {
		if err := e.InsertTokens(ctx, token(stores.AccessToken, "", -time.Minute)); err != nil {
			t.Fatalf("InsertTokens: %v", err)
		}
	}
	if n := e.Evictions(); n != 0 || logs.Len() != 0 {
		t.Fatalf("evicting expired records: %d evictions, %d warnings; want none", n, logs.Len())
	}

	var keys []string
	for i := 0; i < 20000; i++ {
		tok := token(stores.AccessToken, "", time.Hour)
		keys = append(keys, tok.Key)
		if err := e.InsertTokens(ctx, tok); err != nil {
			t.Fatalf("InsertTokens: %v", err)
		}
	}
	n := e.Evictions()
	if n == 0 {
		t.Fatal("20000 tokens in 1 MB evicted nothing")
	}
	if _, err := e.LookupToken(ctx, stores.AccessToken, keys[0]); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("oldest token after eviction: %v, want ErrNotFound", err)
	}
	if _, err := e.LookupToken(ctx, stores.AccessToken, keys[len(keys)-1]); err != nil {
		t.Fatalf("newest token: %v", err)
	}
	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("%d warnings for %d evictions, want 1 (rate-limited)", len(entries), n)
	}
	w := entries[0]
	if w.ContextMap()["evicted_total"] != uint64(1) {
		t.Errorf("warning fields %v, want evicted_total 1", w.ContextMap())
	}
	for _, k := range keys {
		if strings.Contains(w.Message, k) {
			t.Fatal("warning names a key")
		}
	}
}

// Consumed records stay until they expire, then purge takes them with the
// family indexes, leaving the cache empty.
func TestPurgeTakesConsumedAndIndexes(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 8, Shards: 8})
	ctx := context.Background()
	rt := token(stores.RefreshToken, "fam-1", 300*time.Millisecond)
	at := token(stores.AccessToken, "fam-1", 300*time.Millisecond)
	if err := e.InsertTokens(ctx, at, rt); err != nil {
		t.Fatal(err)
	}
	c := &stores.Code{Key: storetest.Key(), ClientID: "c", Family: "fam-1", IssuedAt: time.Now(), ExpiresAt: time.Now().Add(300 * time.Millisecond)}
	if err := e.InsertCode(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ConsumeCode(ctx, c.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ConsumeRefreshToken(ctx, rt.Key); err != nil {
		t.Fatal(err)
	}
	if n, err := e.PurgeExpiredTokens(ctx, 10); n != 0 || err != nil {
		t.Fatalf("purge of live tokens = %d, %v", n, err)
	}
	if n, err := e.PurgeExpiredCodes(ctx, 10); n != 0 || err != nil {
		t.Fatalf("purge of a live consumed code = %d, %v", n, err)
	}
	if _, err := e.ConsumeRefreshToken(ctx, rt.Key); !errors.Is(err, stores.ErrConsumed) {
		t.Fatalf("replay before expiry: %v, want ErrConsumed", err)
	}
	time.Sleep(350 * time.Millisecond)
	if n, err := e.PurgeExpiredCodes(ctx, 1); n != 1 || err != nil {
		t.Fatalf("PurgeExpiredCodes = %d, %v; want 1", n, err)
	}
	if n, err := e.PurgeExpiredTokens(ctx, 1); n != 2 || err != nil {
		t.Fatalf("PurgeExpiredTokens = %d, %v; want 2 (index not counted)", n, err)
	}
	if l := e.cache.Len(); l != 0 {
		t.Fatalf("%d entries left after purging everything", l)
	}
}

// A long refresh chain's index drops members that are gone, so it stays
// small, and revoking the family still reaches the live ones.
func TestFamilyIndexPrunes(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 8, Shards: 8})
	ctx := context.Background()
	live := token(stores.RefreshToken, "fam-long", time.Hour)
	if err := e.InsertTokens(ctx, live); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if err := e.InsertTokens(ctx, token(stores.AccessToken, "fam-long", -time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	v, _ := e.get(familyPrefix + "fam-long")
	if n := len(members(v)); n > 2*pruneFrom {
		t.Fatalf("index lists %d tokens after 1000 expired inserts, want at most %d", n, 2*pruneFrom)
	}
	if err := e.RevokeFamily(ctx, "fam-long", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.LookupToken(ctx, stores.RefreshToken, live.Key); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("live token after RevokeFamily: %v", err)
	}
}

func TestClosedAndCancelled(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 1, Shards: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.LookupToken(ctx, stores.AccessToken, storetest.Key()); !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("cancelled ctx: %v, want ErrUnavailable", err)
	}
	_ = e.Close()
	if _, err := e.LookupToken(context.Background(), stores.AccessToken, storetest.Key()); !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("closed engine: %v, want ErrUnavailable", err)
	}
}

func TestRejectsIndexKeys(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 1, Shards: 1})
	if err := e.InsertTokens(context.Background(), &stores.Token{Key: "f:x", Kind: stores.AccessToken}); err == nil {
		t.Fatal("a key in the family index space was accepted")
	}
}

func BenchmarkLookupToken(b *testing.B) {
	e := newEngine(b, Config{MaxMemoryMB: 256, Shards: 256})
	ctx := context.Background()
	const n = 100_000
	keys := make([]string, n)
	for i := range keys {
		at := token(stores.AccessToken, "fam-"+storetest.Key()[:16], time.Hour)
		keys[i] = at.Key
		if err := e.InsertTokens(ctx, at); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(time.Now().UnixNano()) % n
		for pb.Next() {
			if _, err := e.LookupToken(ctx, stores.AccessToken, keys[i]); err != nil {
				b.Error(err)
				return
			}
			if i++; i == n {
				i = 0
			}
		}
	})
}

func BenchmarkLookupTokenMiss(b *testing.B) {
	e := newEngine(b, Config{MaxMemoryMB: 256, Shards: 256})
	ctx := context.Background()
	key := storetest.Key()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.LookupToken(ctx, stores.AccessToken, key); !errors.Is(err, stores.ErrNotFound) {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkInsertTokens inserts an access and refresh token pair per op, as
// the token endpoint does. It cycles through a fixed set of pairs, emptying
// the cache (untimed) at each round, so that large b.N neither evicts nor
// measures key generation.
func BenchmarkInsertTokens(b *testing.B) {
	e := newEngine(b, Config{MaxMemoryMB: 256, Shards: 256})
	ctx := context.Background()
	pairs := make([][2]*stores.Token, min(b.N, 50_000))
	for i := range pairs {
		fam := "fam-" + storetest.Key()[:16]
		pairs[i] = [2]*stores.Token{token(stores.AccessToken, fam, time.Hour), token(stores.RefreshToken, fam, 24*time.Hour)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(pairs)
		if j == 0 && i > 0 {
			b.StopTimer()
			_ = e.cache.Reset()
			b.StartTimer()
		}
		if err := e.InsertTokens(ctx, pairs[j][0], pairs[j][1]); err != nil {
			b.Fatal(err)
		}
	}
	if n := e.Evictions(); n > 0 {
		b.Fatalf("%d evictions", n)
	}
}

// BenchmarkPurgeScan measures one purge pass over 100,000 live token pairs
// (300,000 entries with their family indexes) that deletes nothing: the
// cost the purger pays every interval.
func BenchmarkPurgeScan(b *testing.B) {
	e := newEngine(b, Config{MaxMemoryMB: 256, Shards: 256})
	ctx := context.Background()
	for i := 0; i < 100_000; i++ {
		fam := "fam-" + storetest.Key()[:16]
		if err := e.InsertTokens(ctx, token(stores.AccessToken, fam, time.Hour), token(stores.RefreshToken, fam, time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n, err := e.PurgeExpiredTokens(ctx, 1000); n != 0 || err != nil {
			b.Fatal(n, err)
		}
	}
}
