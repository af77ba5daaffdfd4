package lookupcache

import (
	"context"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/cache"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// A DPoP-bound OpenID Connect token answers from the cache with its key
// thumbprint and claims, and a caller changing what it got changes
// neither the cached copy nor the next answer.
func TestCachedBindings(t *testing.T) {
	f := newFake()
	c := New(f, time.Minute, 100)
	tok := token(stores.AccessToken, "fam", time.Hour)
	tok.JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	tok.OIDC = &stores.OIDCGrant{SessionID: "sid", AuthTime: time.Unix(1_767_225_600, 0),
		Claims: map[string]any{"email": "alice@example.com", "groups": []any{"admins"}}}
	if err := c.InsertTokens(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		got, err := c.LookupToken(context.Background(), stores.AccessToken, tok.Key)
		if err != nil {
			t.Fatal(err)
		}
		if got.JKT != tok.JKT || got.OIDC == nil || got.OIDC.SessionID != "sid" ||
			got.OIDC.Claims["email"] != "alice@example.com" || got.OIDC.Claims["groups"].([]any)[0] != "admins" {
			t.Fatalf("lookup %d: got JKT %q, OIDC %+v", i, got.JKT, got.OIDC)
		}
		got.OIDC.Claims["email"] = "mallory@example.com"
		got.OIDC.Claims["groups"].([]any)[0] = "nobody"
		got.OIDC.SessionID = "x"
	}
	if f.lookups.Load() != 1 {
		t.Fatalf("%d store lookups, want 1 (the rest from the cache)", f.lookups.Load())
	}
}

// The cache forwards the store's single-use values, and offers none over a
// store without them.
func TestSingleUseForwarded(t *testing.T) {
	if _, ok := stores.SingleUseOf(New(newFake(), time.Minute, 100)); ok {
		t.Fatal("cache over a store without single-use values offers them")
	}
	e, err := cache.New(cache.Config{MaxMemoryMB: 8, Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	su, ok := stores.SingleUseOf(New(e, time.Minute, 100))
	if !ok {
		t.Fatal("cache over the cache store offers no single-use values")
	}
	k := storetest.Key()
	if err := su.PutOnce(context.Background(), k, []byte("v"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.TakeOnce(context.Background(), k); err != nil {
		t.Fatalf("value put through the cache is not in the store: %v", err)
	}
}
