package storetest

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// testSigningKeys: keys come back as stored, sealed bytes intact, and an
// expired key is neither returned nor kept once a new key is inserted.
func testSigningKeys(t *testing.T, s stores.Store) {
	ks, ok := s.(stores.KeyStore)
	if !ok {
		t.Fatalf("%T does not implement stores.KeyStore", s)
	}
	if err := ks.StartKeys(ctx(t)); err != nil {
		t.Fatalf("StartKeys: %v", err)
	}
	if got, err := ks.SigningKeys(ctx(t)); err != nil || len(got) != 0 {
		t.Fatalf("SigningKeys of an empty store = %d keys, %v", len(got), err)
	}
	sealed := func() []byte {
		b := make([]byte, 300) // about a sealed P-256 key
		_, _ = rand.Read(b)
		b[0] = 0 // binary, NUL included
		return b
	}
	n := now()
	a := &stores.SigningKey{ID: "kid-a-" + Key()[:8], Sealed: sealed(), CreatedAt: n.Add(-time.Hour), ExpiresAt: n.Add(time.Hour)}
	short := &stores.SigningKey{ID: "kid-s-" + Key()[:8], Sealed: sealed(), CreatedAt: n.Add(-2 * time.Hour), ExpiresAt: n.Add(1500 * time.Millisecond)}
	for _, k := range []*stores.SigningKey{a, short} {
		if err := ks.InsertSigningKey(ctx(t), k); err != nil {
			t.Fatalf("InsertSigningKey: %v", err)
		}
	}
	check := func(want ...*stores.SigningKey) {
		t.Helper()
		got, err := ks.SigningKeys(ctx(t))
		if err != nil {
			t.Fatalf("SigningKeys: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("SigningKeys = %d keys, want %d", len(got), len(want))
		}
		for _, w := range want {
			found := false
			for _, g := range got {
				if g.ID != w.ID {
					continue
				}
				found = true
				if !bytes.Equal(g.Sealed, w.Sealed) || !sameTime(g.CreatedAt, w.CreatedAt) || !sameTime(g.ExpiresAt, w.ExpiresAt) {
					t.Errorf("key %s came back as %+v, want %+v", w.ID, g, w)
				}
			}
			if !found {
				t.Errorf("key %s missing", w.ID)
			}
		}
	}
	check(a, short)
	time.Sleep(time.Until(short.ExpiresAt) + 100*time.Millisecond)
	check(a)
	b := &stores.SigningKey{ID: "kid-b-" + Key()[:8], Sealed: sealed(), CreatedAt: now(), ExpiresAt: now().Add(time.Hour)}
	if err := ks.InsertSigningKey(ctx(t), b); err != nil {
		t.Fatalf("InsertSigningKey: %v", err)
	}
	check(a, b)
}
