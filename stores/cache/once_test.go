package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// Single-use values are security state: a cache full of them keeps every
// one (a taken request_uri stays taken, a seen jti stays seen) and refuses
// new ones with ErrUnavailable instead of making room.
func TestFullCacheKeepsSingleUse(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 1, Shards: 1})
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	val := make([]byte, 1024)
	var keys []string
	var refused error
	for i := 0; i < 4000 && refused == nil; i++ {
		k := storetest.Key()
		if refused = e.PutOnce(ctx, k, val, exp); refused == nil {
			keys = append(keys, k)
		}
	}
	if !errors.Is(refused, stores.ErrUnavailable) {
		t.Fatalf("4000 values of 1 KiB in 1 MB: last PutOnce %v, want ErrUnavailable", refused)
	}
	if e.Rescued() == 0 {
		t.Fatal("no value was evicted into the overflow; the test did not fill the cache")
	}
	// Every stored value is still there: a replay of any is still caught,
	// and each can be taken once.
	for i, k := range keys {
		if err := e.PutOnce(ctx, k, val, exp); !errors.Is(err, stores.ErrExists) && !errors.Is(err, stores.ErrUnavailable) {
			t.Fatalf("PutOnce of stored value %d in a full cache: %v, want ErrExists or ErrUnavailable", i, err)
		}
		if _, err := e.TakeOnce(ctx, k); err != nil {
			t.Fatalf("TakeOnce of stored value %d in a full cache: %v", i, err)
		}
		if _, err := e.TakeOnce(ctx, k); !errors.Is(err, stores.ErrConsumed) {
			t.Fatalf("second TakeOnce of value %d in a full cache: %v, want ErrConsumed", i, err)
		}
	}
	t.Logf("1 MB cache: %d values of 1 KiB kept, %d rescued, then refused", len(keys), e.Rescued())
}

// A purge that finds an expired value put again meanwhile keeps the new
// one: the key stays taken.
func TestPurgeKeepsValuePutAgain(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 8, Shards: 8})
	ctx := context.Background()
	k := storetest.Key()
	if err := e.PutOnce(ctx, k, []byte("old"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := e.PutOnce(ctx, k, []byte("new"), time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("PutOnce over an expired value: %v", err)
	}
	// The walk may still see the old entry bigcache has not compacted.
	if _, err := e.PurgeExpiredOnce(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if err := e.PutOnce(ctx, k, nil, time.Now().Add(time.Hour)); !errors.Is(err, stores.ErrExists) {
		t.Fatalf("PutOnce after the purge: %v, want ErrExists", err)
	}
	if got, err := e.TakeOnce(ctx, k); err != nil || string(got) != "new" {
		t.Fatalf("TakeOnce = %q, %v; want the new value", got, err)
	}
}

// The guard's lookup of a plain bearer token allocates no more than
// before DPoP and OpenID Connect state were kept (3, measured on the
// engine without them).
func TestLookupAllocations(t *testing.T) {
	e := newEngine(t, Config{MaxMemoryMB: 8, Shards: 8})
	ctx := context.Background()
	tok := token(stores.AccessToken, "fam", time.Hour)
	if err := e.InsertTokens(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := e.LookupToken(ctx, stores.AccessToken, tok.Key); err != nil {
			t.Fatal(err)
		}
	}); n > 3 {
		t.Fatalf("LookupToken of a plain token: %v allocations, want at most 3", n)
	}
}
