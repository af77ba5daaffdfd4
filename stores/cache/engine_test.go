package cache

import (
	"context"
	"errors"
	"fmt"
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

// A full cache loses no live record: bigcache's evictions of live records
// go to the overflow, and once that is over its budget new tokens are
// refused with ErrUnavailable, counted, and warned about at most once a
// minute without naming any key.
func TestFullCacheKeepsLiveAndRefuses(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	e := newEngine(t, Config{MaxMemoryMB: 1, Shards: 1, Logger: zap.New(core)})
	ctx := context.Background()

	// Expired records pushed out make no noise and take no overflow.
	for i := 0; i < 20000; i++ {
		if err := e.InsertTokens(ctx, token(stores.AccessToken, "", -time.Minute)); err != nil {
			t.Fatalf("InsertTokens: %v", err)
		}
	}
	if e.Rescued() != 0 || e.OverflowBytes() != 0 || logs.Len() != 0 {
		t.Fatalf("evicting expired records: %d rescued, %d overflow bytes, %d warnings; want none",
			e.Rescued(), e.OverflowBytes(), logs.Len())
	}

	var keys []string
	var refused error
	for i := 0; i < 40000 && refused == nil; i++ {
		tok := token(stores.AccessToken, "", time.Hour)
		if refused = e.InsertTokens(ctx, tok); refused == nil {
			keys = append(keys, tok.Key)
		}
	}
	if !errors.Is(refused, stores.ErrUnavailable) {
		t.Fatalf("40000 tokens in 1 MB: last insert %v, want ErrUnavailable", refused)
	}
	if e.Rescued() == 0 || e.Refusals() != 1 {
		t.Fatalf("%d rescued, %d refused; want some and 1", e.Rescued(), e.Refusals())
	}
	if e.OverflowBytes() > e.OverflowBudget()+4096 {
		t.Fatalf("overflow %d bytes, budget %d", e.OverflowBytes(), e.OverflowBudget())
	}
	for _, k := range keys {
		if _, err := e.LookupToken(ctx, stores.AccessToken, k); err != nil {
			t.Fatalf("a live token was lost in a full cache: %v", err)
		}
	}
	t.Logf("1 MB cache: %d live tokens held, %d rescued into %d overflow bytes (budget %d), then refused",
		len(keys), e.Rescued(), e.OverflowBytes(), e.OverflowBudget())
	if err := e.InsertCode(ctx, &stores.Code{Key: storetest.Key(), ExpiresAt: time.Now().Add(time.Minute)}); !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("InsertCode into a full cache: %v, want ErrUnavailable", err)
	}
	// Revocation is never refused.
	if err := e.RevokeFamily(ctx, "fam-x", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("RevokeFamily in a full cache: %v", err)
	}
	if err := e.RevokeToken(ctx, stores.AccessToken, keys[0]); err != nil {
		t.Fatalf("RevokeToken in a full cache: %v", err)
	}
	if _, err := e.LookupToken(ctx, stores.AccessToken, keys[0]); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("revoked token from the overflow: %v", err)
	}

	entries := logs.All()
	if len(entries) != 2 {
		t.Fatalf("%d warnings, want 2 (one rescue, one refusal: rate-limited)", len(entries))
	}
	for _, w := range entries {
		for _, k := range keys {
			if strings.Contains(w.Message, k) {
				t.Fatal("warning names a key")
			}
		}
	}
	if entries[1].ContextMap()["refused_total"] != uint64(1) {
		t.Errorf("refusal warning fields %v, want refused_total 1", entries[1].ContextMap())
	}
}

// The scenario at engine level: grants, then a flood of
// client_credentials tokens until the cache refuses; every grant's family
// index, consumed refresh token and revocation still works.
func TestFullCacheKeepsSecurityState(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 1, Shards: 16})
	ctx := context.Background()
	type grant struct{ at, rt, used *stores.Token }
	var grants []grant
	for i := 0; i < 60; i++ {
		fam := "fam-" + storetest.Key()[:16]
		g := grant{token(stores.AccessToken, fam, time.Hour), token(stores.RefreshToken, fam, 24*time.Hour), token(stores.RefreshToken, fam, 24*time.Hour)}
		if err := e.InsertTokens(ctx, g.used); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ConsumeRefreshToken(ctx, g.used.Key); err != nil {
			t.Fatal(err)
		}
		if err := e.InsertTokens(ctx, g.at, g.rt); err != nil {
			t.Fatal(err)
		}
		grants = append(grants, g)
	}
	flood := 0
	for ; flood < 100000; flood++ {
		err := e.InsertTokens(ctx, token(stores.AccessToken, "", time.Hour))
		if errors.Is(err, stores.ErrUnavailable) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if flood == 100000 {
		t.Fatal("the flood was never refused")
	}
	t.Logf("%d flood tokens, %d records rescued, overflow %d of %d bytes", flood, e.Rescued(), e.OverflowBytes(), e.OverflowBudget())
	// A refresh is refused before it spends the token.
	if _, err := e.ConsumeRefreshToken(ctx, grants[0].rt.Key); !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("refresh in a full cache: %v, want ErrUnavailable", err)
	}
	for _, g := range grants {
		if _, err := e.ConsumeRefreshToken(ctx, g.used.Key); !errors.Is(err, stores.ErrConsumed) {
			t.Fatalf("replay of a rotated refresh token in a full cache: %v, want ErrConsumed", err)
		}
		if err := e.RevokeFamily(ctx, g.at.Family, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	survivors := 0
	for _, g := range grants {
		for _, tok := range []*stores.Token{g.at, g.rt} {
			if _, err := e.LookupToken(ctx, tok.Kind, tok.Key); err == nil {
				survivors++
			}
		}
		if err := e.InsertTokens(ctx, token(stores.AccessToken, g.at.Family, time.Hour)); !errors.Is(err, stores.ErrRevoked) && !errors.Is(err, stores.ErrUnavailable) {
			t.Fatalf("insert into a revoked family: %v", err)
		}
	}
	if survivors > 0 {
		t.Fatalf("%d tokens of 60 revoked families survived", survivors)
	}
}

// Purge expires what the overflow holds, and counts it once.
func TestPurgeExpiresOverflow(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 1, Shards: 1})
	ctx := context.Background()
	for i := 0; i < 12000; i++ {
		fam := ""
		if i%2 == 0 {
			fam = "fam-" + storetest.Key()[:16]
		}
		if err := e.InsertTokens(ctx, token(stores.AccessToken, fam, 500*time.Millisecond)); err != nil {
			break
		}
	}
	if e.OverflowBytes() == 0 {
		t.Fatal("nothing in the overflow")
	}
	if err := e.RevokeFamily(ctx, "fam-y", time.Now().Add(400*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	n, err := e.PurgeExpiredTokens(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if l := e.cache.Len(); l != 0 || e.OverflowBytes() != 0 || e.over.n.Load() != 0 {
		t.Fatalf("after purge: %d entries, %d overflow bytes in %d records", l, e.OverflowBytes(), e.over.n.Load())
	}
	t.Logf("purged %d tokens", n)
	if err := e.InsertTokens(ctx, token(stores.AccessToken, "", time.Hour)); err != nil {
		t.Fatalf("insert after purge: %v", err)
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
	if n := e.Rescued(); n > 0 {
		b.Fatalf("%d rescued", n)
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

// Long-lived tokens reach the head of bigcache's FIFO shards while the
// short-lived tokens around them expire: they are rescued, and purge moves
// them back into the reclaimed space, so the overflow drains and issuance
// goes on. Without that, the cache would refuse to issue while mostly
// expired.
func TestOverflowDrainsIntoReclaimedSpace(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 1, Shards: 1})
	ctx := context.Background()
	var long []*stores.Token
	for round := 0; round < 8; round++ {
		for i := 0; i < 3000; i++ {
			if i%20 == 0 {
				tok := token(stores.RefreshToken, "fam-"+storetest.Key()[:16], time.Hour)
				long = append(long, tok)
				if err := e.InsertTokens(ctx, tok); err != nil {
					t.Fatalf("round %d, insert %d: %v (overflow %d of %d bytes)", round, i, err, e.OverflowBytes(), e.OverflowBudget())
				}
				continue
			}
			if err := e.InsertTokens(ctx, token(stores.AccessToken, "", 150*time.Millisecond)); err != nil {
				t.Fatalf("round %d, insert %d: %v (overflow %d of %d bytes)", round, i, err, e.OverflowBytes(), e.OverflowBudget())
			}
		}
		time.Sleep(200 * time.Millisecond)
		if _, err := e.PurgeExpiredTokens(ctx, 1000); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d long-lived grants among %d short-lived tokens in 1 MB: %d rescued, %d refused, overflow now %d bytes",
		len(long), 8*3000-len(long), e.Rescued(), e.Refusals(), e.OverflowBytes())
	if e.Rescued() == 0 {
		t.Fatal("nothing was rescued: the test did not fill the cache")
	}
	for _, tok := range long {
		if _, err := e.LookupToken(ctx, tok.Kind, tok.Key); err != nil {
			t.Fatalf("long-lived token lost: %v", err)
		}
		if err := e.RevokeFamily(ctx, tok.Family, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.LookupToken(ctx, tok.Kind, tok.Key); !errors.Is(err, stores.ErrNotFound) {
			t.Fatalf("revoked token: %v", err)
		}
	}
	if e.Refusals() != 0 {
		t.Fatalf("%d refusals in a cache of mostly expired records", e.Refusals())
	}
}

// Records keep times outside the compact layout's range (a zero issue
// time, a lifetime of years) to the millisecond, and client ids and scopes
// beyond the intern table's room inline, as they were given.
func TestRecordsKeepUnusualValues(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 64, Shards: 64})
	ctx := context.Background()
	n := time.Now().Truncate(time.Millisecond)
	var toks []*stores.Token
	for i := range internMax + 100 {
		tok := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken,
			ClientID: fmt.Sprintf("client-%d", i), Scope: fmt.Sprintf("read scope-%d", i),
			Subject: "alice", IssuedAt: n, ExpiresAt: n.Add(time.Hour)}
		switch i {
		case 0:
			tok.IssuedAt = time.UnixMilli(0)
		case 1:
			tok.ExpiresAt = n.AddDate(30, 0, 0)
		case 2:
			tok.ClientID = strings.Repeat("c", internMaxLen+1)
		case 3:
			tok.Kind, tok.Family = stores.RefreshToken, "fam-3"
		}
		toks = append(toks, tok)
	}
	if err := e.InsertTokens(ctx, toks...); err != nil {
		t.Fatal(err)
	}
	for _, want := range toks {
		got, err := e.LookupToken(ctx, want.Kind, want.Key)
		if err != nil {
			t.Fatalf("%s: %v", want.ClientID, err)
		}
		if got.Key != want.Key || got.ClientID != want.ClientID || got.Scope != want.Scope || got.Subject != want.Subject ||
			got.Family != want.Family || !got.IssuedAt.Equal(want.IssuedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	// Keys that are not 64 lowercase hex digits are kept as they are, and
	// two that differ only in case are two keys.
	upper := strings.ToUpper(toks[5].Key)
	if _, err := e.LookupToken(ctx, stores.AccessToken, upper); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("upper-case key: %v, want ErrNotFound", err)
	}
	odd := &stores.Token{Key: "k-" + upper, Kind: stores.AccessToken, ClientID: "c", IssuedAt: n, ExpiresAt: n.Add(time.Hour)}
	if err := e.InsertTokens(ctx, odd); err != nil {
		t.Fatal(err)
	}
	if got, err := e.LookupToken(ctx, stores.AccessToken, odd.Key); err != nil || got.Key != odd.Key {
		t.Fatalf("odd key: %v %v", got, err)
	}
	if err := e.InsertTokens(ctx, &stores.Token{Key: "\x00" + odd.Key, Kind: stores.AccessToken}); err == nil {
		t.Fatal("a key starting with a zero byte was accepted")
	}
}

// The purge drops lapsed registered clients and keeps the others.
func TestPurgeDropsLapsedClients(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 4, Shards: 4})
	ctx := context.Background()
	n := time.Now()
	for i, exp := range []time.Time{{}, n.Add(time.Hour), n.Add(-time.Second), n.Add(-time.Hour)} {
		c := &stores.RegisteredClient{ID: fmt.Sprint("c", i), RegisteredBy: stores.RegisteredByAdmin, CreatedAt: n, UpdatedAt: n, ExpiresAt: exp}
		if err := e.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.PurgeExpiredTokens(ctx, 10); err != nil {
		t.Fatal(err)
	}
	e.clientsMu.RLock()
	kept := len(e.reg.clients)
	e.clientsMu.RUnlock()
	if kept != 2 {
		t.Fatalf("after the purge the cache holds %d clients, want the 2 live ones", kept)
	}
}

// Audiences round-trip in the compact records, interned or inline, and a
// bad entry is refused rather than stored garbled.
func TestAudienceRecords(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 4, Shards: 4})
	ctx := context.Background()
	long := "https://api.example/" + strings.Repeat("x", 300) // past the interning bound
	for _, aud := range [][]string{nil, {"https://a.example"}, {"https://a.example", long, "urn:x"}} {
		tok := token(stores.AccessToken, "", time.Hour)
		tok.Audience = aud
		if err := e.InsertTokens(ctx, tok); err != nil {
			t.Fatal(err)
		}
		got, err := e.LookupToken(ctx, stores.AccessToken, tok.Key)
		if err != nil || fmt.Sprint(got.Audience) != fmt.Sprint(aud) || len(got.Audience) != len(aud) {
			t.Fatalf("audience %q came back as %q, %v", aud, got.Audience, err)
		}
	}
	for _, bad := range [][]string{{""}, {"https://a.example b"}} {
		tok := token(stores.AccessToken, "", time.Hour)
		tok.Audience = bad
		if err := e.InsertTokens(ctx, tok); err == nil {
			t.Fatalf("audience %q was accepted", bad)
		}
	}
}
