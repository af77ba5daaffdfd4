package jwt

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
)

// FuzzVerify: whatever the bearer string, PeekIssuer and Verify neither
// panic nor accept anything not signed by the ring's key.
func FuzzVerify(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	k, err := NewKey(priv)
	if err != nil {
		f.Fatal(err)
	}
	r, err := NewRing(RingConfig{Keys: []*Key{k}})
	if err != nil {
		f.Fatal(err)
	}
	good, err := r.Sign(&Claims{Issuer: "https://as.example", ID: "j"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, good + "x", "a.b.c", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.", "...", "eyJ9.e30.", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		PeekIssuer(raw)
		c, _, err := r.Verify(context.Background(), raw)
		if err == nil && raw != good {
			// Another serialisation of the same signed payload is fine;
			// anything else must not verify.
			if c.Issuer != "https://as.example" || c.ID != "j" {
				t.Fatalf("verified a token we did not sign: %q", raw)
			}
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("a token's fault reported as an outage: %v", err)
		}
	})
}
