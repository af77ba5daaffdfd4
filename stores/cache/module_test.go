package cache

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  Store
		err   string
	}{
		{name: "bare", input: `cache`, want: Store{}},
		{name: "empty block", input: "cache {\n}", want: Store{}},
		{name: "all", input: `cache {
			name sessions
			max_memory 64
			shards 128
		}`, want: Store{Name: "sessions", MaxMemory: 64, Shards: 128}},
		{name: "argument", input: `cache big`, err: "wrong argument count"},
		{name: "zero memory", input: "cache {\nmax_memory 0\n}", err: "at least 1"},
		{name: "negative memory", input: "cache {\nmax_memory -5\n}", err: "at least 1"},
		{name: "memory with unit", input: "cache {\nmax_memory 256MB\n}", err: "whole number of megabytes"},
		{name: "shards not power of two", input: "cache {\nshards 100\n}", err: "power of two"},
		{name: "shards zero", input: "cache {\nshards 0\n}", err: "power of two"},
		{name: "missing value", input: "cache {\nname\n}", err: "wrong argument count"},
		{name: "extra value", input: "cache {\nname a b\n}", err: "wrong argument count"},
		{name: "duplicate", input: "cache {\nname a\nname b\n}", err: "duplicate"},
		{name: "unknown", input: "cache {\nlife 5m\n}", err: `unrecognized subdirective "life"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Store
			err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if s.Name != tc.want.Name || s.MaxMemory != tc.want.MaxMemory || s.Shards != tc.want.Shards {
				t.Fatalf("got %+v, want %+v", s, tc.want)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	b, err := json.Marshal(&Store{Name: "x", MaxMemory: 64})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"name":"x","max_memory":64}` {
		t.Fatalf("JSON %s", b)
	}
}

func caddyContext(t *testing.T) caddy.Context {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

func TestProvisionDefaultsAndValidate(t *testing.T) {
	for _, tc := range []struct {
		in         Store
		wantShards int
		err        string
	}{
		{in: Store{}, wantShards: 256},
		{in: Store{MaxMemory: 1}, wantShards: 16},
		{in: Store{MaxMemory: 3}, wantShards: 32},
		{in: Store{MaxMemory: 1, Shards: 256}, err: "at most 16 shards"},
		{in: Store{Shards: 3}, err: "power of two"},
		{in: Store{MaxMemory: -1}, err: "at least 1"},
		{in: Store{MaxMemory: 8192, Shards: 1}, err: "per shard"},
	} {
		s := tc.in
		s.Name = "defaults-" + t.Name()
		err := s.Provision(caddyContext(t))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: error %v, want one containing %q", tc.in, err, tc.err)
			}
			_ = s.Cleanup()
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tc.in, err)
			continue
		}
		if s.Shards != tc.wantShards || (tc.in.MaxMemory == 0 && s.MaxMemory != 256) {
			t.Errorf("%+v provisioned as %+v, want %d shards", tc.in, s, tc.wantShards)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("Validate after Provision: %v", err)
		}
		if err := s.Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	}
	s := Store{}
	if err := s.Provision(caddyContext(t)); err != nil {
		t.Fatal(err)
	}
	defer s.Cleanup()
	if s.Name != "default" {
		t.Fatalf("default name %q", s.Name)
	}
}

// Two stores configured alike, as access_token_store and
// authorization_code_store, or the same store before and after a reload,
// share one cache; the last Cleanup closes it.
func TestPoolSharesOneCache(t *testing.T) {
	a := &Store{Name: "shared", MaxMemory: 4}
	if err := a.Provision(caddyContext(t)); err != nil {
		t.Fatal(err)
	}
	b := &Store{Name: "shared", MaxMemory: 4}
	if err := b.Provision(caddyContext(t)); err != nil {
		t.Fatal(err)
	}
	other := &Store{Name: "other", MaxMemory: 4}
	if err := other.Provision(caddyContext(t)); err != nil {
		t.Fatal(err)
	}
	defer other.Cleanup()
	if a.Engine != b.Engine {
		t.Fatal("two stores with the same settings got two caches")
	}
	if a.Engine == other.Engine {
		t.Fatal("stores with different names share a cache")
	}
	eng := a.Engine

	ctx := context.Background()
	tok := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, ClientID: "c", Family: "f",
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := a.InsertTokens(ctx, tok); err != nil {
		t.Fatal(err)
	}
	// The old config goes away after the new one provisioned: the token
	// survives the "reload".
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if eng.closed.Load() {
		t.Fatal("cache closed while a store still uses it")
	}
	if _, err := b.LookupToken(ctx, stores.AccessToken, tok.Key); err != nil {
		t.Fatalf("token issued before the reload: %v", err)
	}
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if !eng.closed.Load() {
		t.Fatal("last Cleanup did not close the cache")
	}
	if n, ok := pool.References("cache/shared/4/64"); ok {
		t.Fatalf("pool still holds the cache (%d references)", n)
	}

	// A fresh provision after everything was released starts empty.
	c := &Store{Name: "shared", MaxMemory: 4}
	if err := c.Provision(caddyContext(t)); err != nil {
		t.Fatal(err)
	}
	defer c.Cleanup()
	if c.Engine == eng {
		t.Fatal("a closed cache was handed out again")
	}
}
