package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// testClients checks stores.ClientRegistry: every field round-trips (nil
// and empty lists told apart, metadata bytes intact, times to the
// millisecond), IDs are unique even under concurrent creates, updates
// replace whole, deletes delete, and a lapsed client is absent.
func testClients(t *testing.T, s stores.Store) {
	cr, ok := s.(stores.ClientRegistry)
	if !ok {
		t.Fatalf("%T does not implement stores.ClientRegistry", s)
	}
	if err := cr.StartClients(ctx(t)); err != nil {
		t.Fatalf("StartClients: %v", err)
	}
	sfx := Key()[:8]
	n := now()
	full := &stores.RegisteredClient{
		ID:                      "full-" + sfx,
		SecretHash:              []byte("$2a$10$abcdefghijklmnopqrstuuJr2bYl4l0lUeE3Ubq9CwsUo2l9CGbu6"),
		PreviousSecretHash:      []byte("$2a$10$zyxwvutsrqponmlkjihgfeJr2bYl4l0lUeE3Ubq9CwsUo2l9CGbu6"),
		PreviousSecretExpiresAt: n.Add(24 * time.Hour),
		RedirectURIs:            []string{"https://app.example/cb", "http://127.0.0.1/cb?x=1&y=ü"},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		Scopes:                  []string{"read", "write"},
		SkipConsent:             true,
		Introspect:              true,
		Name:                    "Ünïcode app 'quoted' \"too\"",
		LogoURI:                 "https://app.example/logo.png",
		Resources:               []string{"https://api.example/", "urn:example:api"},
		RegisteredBy:            stores.RegisteredDynamically,
		RegistrationTokenKey:    Key(),
		Metadata:                []byte(`{"token_endpoint_auth_method":"client_secret_basic","contacts":["a@b.example"],"x":"\u0000"}`),
		CreatedAt:               n.Add(-time.Hour),
		UpdatedAt:               n,
		ExpiresAt:               n.Add(720 * time.Hour),
	}
	// A public client registered by an admin: no secret, empty lists (not
	// nil), no metadata, no expiry.
	bare := &stores.RegisteredClient{
		ID:           "bare-" + sfx,
		RedirectURIs: []string{},
		GrantTypes:   []string{"authorization_code"},
		Scopes:       []string{},
		Resources:    nil,
		RegisteredBy: stores.RegisteredByAdmin,
		CreatedAt:    n,
		UpdatedAt:    n,
	}
	for _, c := range []*stores.RegisteredClient{full, bare} {
		if err := cr.CreateClient(ctx(t), c); err != nil {
			t.Fatalf("CreateClient(%s): %v", c.ID, err)
		}
		got, err := cr.GetClient(ctx(t), c.ID)
		if err != nil {
			t.Fatalf("GetClient(%s): %v", c.ID, err)
		}
		checkClient(t, got, c)
	}
	// What the store returns is a copy: changing it changes nothing stored.
	got, _ := cr.GetClient(ctx(t), full.ID)
	got.Scopes[0], got.Name, got.Metadata[0] = "admin", "changed", 'X'
	if again, err := cr.GetClient(ctx(t), full.ID); err != nil {
		t.Fatalf("GetClient: %v", err)
	} else {
		checkClient(t, again, full)
	}

	// A duplicate changes nothing.
	dup := *bare
	dup.Name = "impostor"
	wantErr(t, "CreateClient of an existing id", cr.CreateClient(ctx(t), &dup), stores.ErrExists)
	if got, err := cr.GetClient(ctx(t), bare.ID); err != nil {
		t.Fatalf("GetClient: %v", err)
	} else {
		checkClient(t, got, bare)
	}

	// Not found.
	_, err := cr.GetClient(ctx(t), "absent-"+sfx)
	wantErr(t, "GetClient of an unknown id", err, stores.ErrNotFound)
	absent := *bare
	absent.ID = "absent-" + sfx
	wantErr(t, "UpdateClient of an unknown id", cr.UpdateClient(ctx(t), &absent), stores.ErrNotFound)
	wantErr(t, "DeleteClient of an unknown id", cr.DeleteClient(ctx(t), absent.ID), stores.ErrNotFound)
	if _, err := cr.GetClient(ctx(t), absent.ID); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("UpdateClient of an unknown id created it: %v", err)
	}

	// An update replaces the client whole: set fields are cleared too.
	upd := *full
	upd.SecretHash = []byte("$2a$10$newnewnewnewnewnewnewuJr2bYl4l0lUeE3Ubq9CwsUo2l9CGbu6")
	upd.PreviousSecretHash, upd.PreviousSecretExpiresAt = nil, time.Time{}
	upd.RedirectURIs = []string{"https://other.example/cb"}
	upd.Scopes = nil
	upd.Resources = []string{}
	upd.SkipConsent, upd.Introspect = false, false
	upd.Name, upd.LogoURI, upd.RegistrationTokenKey, upd.Metadata = "", "", "", nil
	upd.UpdatedAt = n.Add(time.Minute)
	upd.ExpiresAt = time.Time{}
	if err := cr.UpdateClient(ctx(t), &upd); err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	if got, err := cr.GetClient(ctx(t), full.ID); err != nil {
		t.Fatalf("GetClient after update: %v", err)
	} else {
		checkClient(t, got, &upd)
	}

	// List: both, marked as they were registered.
	list := func() map[string]*stores.RegisteredClient {
		t.Helper()
		all, err := cr.ListClients(ctx(t))
		if err != nil {
			t.Fatalf("ListClients: %v", err)
		}
		m := map[string]*stores.RegisteredClient{}
		for _, c := range all {
			if strings.HasSuffix(c.ID, sfx) {
				if m[c.ID] != nil {
					t.Fatalf("ListClients returned %s twice", c.ID)
				}
				m[c.ID] = c
			}
		}
		return m
	}
	if m := list(); len(m) != 2 || m[full.ID] == nil || m[bare.ID] == nil {
		t.Fatalf("ListClients = %v, want %s and %s", m, full.ID, bare.ID)
	} else {
		checkClient(t, m[full.ID], &upd)
		checkClient(t, m[bare.ID], bare)
	}

	// Delete, then the id is free again.
	if err := cr.DeleteClient(ctx(t), bare.ID); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	_, err = cr.GetClient(ctx(t), bare.ID)
	wantErr(t, "GetClient of a deleted client", err, stores.ErrNotFound)
	wantErr(t, "DeleteClient twice", cr.DeleteClient(ctx(t), bare.ID), stores.ErrNotFound)
	if m := list(); len(m) != 1 || m[full.ID] == nil {
		t.Fatalf("ListClients after delete = %v, want only %s", m, full.ID)
	}
	if err := cr.CreateClient(ctx(t), bare); err != nil {
		t.Fatalf("CreateClient of a deleted id: %v", err)
	}

	// Lapse: a client past its ExpiresAt is absent, and its id is free.
	short := *bare
	short.ID, short.ExpiresAt = "short-"+sfx, now().Add(1200*time.Millisecond)
	if err := cr.CreateClient(ctx(t), &short); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	if _, err := cr.GetClient(ctx(t), short.ID); err != nil {
		t.Fatalf("GetClient of a client not yet lapsed: %v", err)
	}
	lapsed := *bare
	lapsed.ID, lapsed.ExpiresAt = "lapsed-"+sfx, now().Add(-time.Second)
	if err := cr.CreateClient(ctx(t), &lapsed); err != nil {
		t.Fatalf("CreateClient of a lapsed client: %v", err)
	}
	_, err = cr.GetClient(ctx(t), lapsed.ID)
	wantErr(t, "GetClient of a lapsed client", err, stores.ErrNotFound)
	time.Sleep(time.Until(short.ExpiresAt) + 300*time.Millisecond)
	_, err = cr.GetClient(ctx(t), short.ID)
	wantErr(t, "GetClient of a client after its ExpiresAt", err, stores.ErrNotFound)
	if m := list(); len(m) != 2 || m[short.ID] != nil || m[lapsed.ID] != nil {
		t.Fatalf("ListClients lists lapsed clients: %v", m)
	}
	wantErr(t, "UpdateClient of a lapsed client", cr.UpdateClient(ctx(t), &short), stores.ErrNotFound)
	if _, err := s.PurgeExpiredTokens(ctx(t), 100); err != nil {
		t.Fatalf("PurgeExpiredTokens: %v", err)
	}
	if m := list(); len(m) != 2 || m[full.ID] == nil || m[bare.ID] == nil {
		t.Fatalf("the purge removed live clients: %v", m)
	}
	renewed := short
	renewed.ExpiresAt = time.Time{}
	if err := cr.CreateClient(ctx(t), &renewed); err != nil {
		t.Fatalf("CreateClient over a lapsed client: %v", err)
	}
	if got, err := cr.GetClient(ctx(t), short.ID); err != nil {
		t.Fatalf("GetClient: %v", err)
	} else {
		checkClient(t, got, &renewed)
	}

	// Bad input is refused, not stored.
	if err := cr.CreateClient(ctx(t), &stores.RegisteredClient{RegisteredBy: stores.RegisteredByAdmin, CreatedAt: n}); err == nil {
		t.Fatal("CreateClient without an id succeeded")
	}
	big := *bare
	big.ID, big.Metadata = "big-"+sfx, bytes.Repeat([]byte("x"), 16<<10+1)
	if err := cr.CreateClient(ctx(t), &big); err == nil || errors.Is(err, stores.ErrExists) {
		t.Fatalf("CreateClient with metadata over 16 KiB = %v, want an error", err)
	}
	if _, err := cr.GetClient(ctx(t), big.ID); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("a refused client was stored: %v", err)
	}

	// Concurrent creates of one id: exactly one wins, and it is the one
	// stored.
	const racers = 12
	id := "race-" + sfx
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		winner string
		wins   int
		exists int
		other  []error
	)
	start := make(chan struct{})
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := *bare
			c.ID, c.Name = id, "racer-"+string(rune('a'+i))
			<-start
			err := cr.CreateClient(context.Background(), &c)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
				winner = c.Name
			case errors.Is(err, stores.ErrExists):
				exists++
			default:
				other = append(other, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins != 1 || exists != racers-1 || len(other) > 0 {
		t.Fatalf("%d concurrent creates of one id: %d won, %d ErrExists, other errors %v; want exactly 1 winner", racers, wins, exists, other)
	}
	if got, err := cr.GetClient(ctx(t), id); err != nil || got.Name != winner {
		t.Fatalf("after the race GetClient = %+v, %v; want the winner %q", got, err, winner)
	}
}

// checkClient compares every field, telling nil lists from empty ones.
func checkClient(t *testing.T, got, want *stores.RegisteredClient) {
	t.Helper()
	if got == nil {
		t.Fatal("got nil client")
	}
	lists := func(a, b []string) bool { return (a == nil) == (b == nil) && slices.Equal(a, b) }
	if got.ID != want.ID || !bytes.Equal(got.SecretHash, want.SecretHash) ||
		!bytes.Equal(got.PreviousSecretHash, want.PreviousSecretHash) ||
		(got.SecretHash == nil) != (want.SecretHash == nil) ||
		(got.PreviousSecretHash == nil) != (want.PreviousSecretHash == nil) ||
		!lists(got.RedirectURIs, want.RedirectURIs) || !lists(got.GrantTypes, want.GrantTypes) ||
		!lists(got.Scopes, want.Scopes) || !lists(got.Resources, want.Resources) ||
		got.SkipConsent != want.SkipConsent || got.Introspect != want.Introspect ||
		got.Name != want.Name || got.LogoURI != want.LogoURI || got.RegisteredBy != want.RegisteredBy ||
		got.RegistrationTokenKey != want.RegistrationTokenKey || !bytes.Equal(got.Metadata, want.Metadata) {
		t.Fatalf("client fields differ:\n got  %#v\n want %#v", got, want)
	}
	for _, p := range []struct {
		what     string
		got, exp time.Time
	}{
		{"PreviousSecretExpiresAt", got.PreviousSecretExpiresAt, want.PreviousSecretExpiresAt},
		{"CreatedAt", got.CreatedAt, want.CreatedAt},
		{"UpdatedAt", got.UpdatedAt, want.UpdatedAt},
		{"ExpiresAt", got.ExpiresAt, want.ExpiresAt},
	} {
		if p.got.IsZero() != p.exp.IsZero() || (!p.exp.IsZero() && !p.got.Equal(p.exp)) {
			t.Fatalf("client %s = %v, want %v", p.what, p.got, p.exp)
		}
	}
}
