package storetest

import (
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// RunFeed runs the revocation feed contract against a backend. newFeed is
// called twice per test: the two feeds stand for two gateways sharing the
// backend, and each test's events must not be confused with earlier ones
// (the suite only looks for the keys it published).
func RunFeed(t *testing.T, newFeed func(t *testing.T) stores.RevocationFeed) {
	t.Run("StartFeed is idempotent", func(t *testing.T) {
		f := newFeed(t)
		for i := 0; i < 2; i++ {
			if err := f.StartFeed(ctx(t)); err != nil {
				t.Fatalf("StartFeed #%d: %v", i+1, err)
			}
		}
	})

	t.Run("events published by one gateway are read by another", func(t *testing.T) {
		pub, sub := newFeed(t), newFeed(t)
		for _, f := range []stores.RevocationFeed{pub, sub} {
			if err := f.StartFeed(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}
		before := time.Now().Add(-2 * time.Second)
		want := []stores.Revocation{
			{Kind: stores.RevokedToken, Key: Key()},
			{Kind: stores.RevokedFamily, Key: "fam-" + Key()[:16]},
			{Kind: stores.RevokedSubject, Key: "alice-" + Key()[:8], ClientID: "app"},
			{Kind: stores.RevokedSubject, ClientID: "client-" + Key()[:8]},
			{Kind: stores.ChangedClient, Key: "registered-" + Key()[:8]},
		}
		for _, r := range want {
			if err := pub.PublishRevocation(ctx(t), r); err != nil {
				t.Fatalf("PublishRevocation(%v): %v", r.Kind, err)
			}
		}
		got, err := sub.RevocationsSince(ctx(t), before)
		if err != nil {
			t.Fatalf("RevocationsSince: %v", err)
		}
		ids := map[string]bool{}
		for _, w := range want {
			found := false
			for _, g := range got {
				if g.Kind != w.Kind || g.Key != w.Key || g.ClientID != w.ClientID {
					continue
				}
				found = true
				if g.ID == "" || ids[g.ID] {
					t.Errorf("event %v: ID %q empty or repeated", w.Kind, g.ID)
				}
				ids[g.ID] = true
				if g.At.Before(before) || g.At.After(time.Now().Add(2*time.Second)) {
					t.Errorf("event %v: At %v, want about now", w.Kind, g.At)
				}
			}
			if !found {
				t.Errorf("event %v %q %q not read back from %d events", w.Kind, w.Key, w.ClientID, len(got))
			}
		}

		// Reading from a later point leaves them out.
		later, err := sub.RevocationsSince(ctx(t), time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range later {
			if ids[g.ID] {
				t.Errorf("an event of %v was read from a point after it", g.At)
			}
		}
	})
}
