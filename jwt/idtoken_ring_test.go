package jwt

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestRingRSAForIDTokens: a stored ring that generates RS256 beside ES256
// shares both through the store, signs access tokens with the P-256 key
// and ID tokens (typ JWT) with the RSA one, publishes both, rotates each,
// and Verify, which is for access tokens, refuses the ID tokens.
func TestRingRSAForIDTokens(t *testing.T) {
	store := &memKeys{}
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	newRing := func() *Ring {
		r, err := NewRing(RingConfig{Store: store, Sealer: NewSealer([]byte("a secret of at least thirty-two bytes")),
			Generate: []jose.SignatureAlgorithm{jose.ES256, jose.RS256}, Rotation: 24 * time.Hour, TokenLifetime: time.Hour, Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := newRing(), newRing()
	if len(store.keys) != 2 {
		t.Fatalf("%d keys stored, want one ES256 and one RS256", len(store.keys))
	}
	if got := strings.Join(a.Algorithms(), ","); got != "RS256,ES256" {
		t.Errorf("Algorithms = %s, want RS256 first", got)
	}
	if len(jwksIDs(t, b)) != 2 {
		t.Errorf("JWKS %v, want both keys", jwksIDs(t, b))
	}
	id, err := a.SignAs("RS256", map[string]any{"iss": "https://as.example", "sub": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jose.ParseSigned(id, []jose.SignatureAlgorithm{jose.RS256})
	if h := tok.Signatures[0].Protected; h.Algorithm != "RS256" || h.ExtraHeaders[jose.HeaderType] != "JWT" {
		t.Errorf("ID token header %+v", h)
	}
	if _, _, err := b.Verify(context.Background(), id); err == nil {
		t.Error("Verify accepted an ID token as an access token")
	}
	access := sign(t, a, clk)
	if _, _, err := b.Verify(context.Background(), access); err != nil {
		t.Errorf("access token: %v", err)
	}
	if tok, _ := jose.ParseSigned(access, []jose.SignatureAlgorithm{jose.ES256}); tok == nil {
		t.Error("access token not ES256")
	}
	if _, err := a.SignAs("EdDSA", map[string]any{}); err != ErrNoAlgorithm {
		t.Errorf("SignAs(EdDSA) = %v, want ErrNoAlgorithm", err)
	}
	// Past the rotation both algorithms get a new key; the old ones stay
	// published.
	clk.add(25 * time.Hour)
	if err := a.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(store.keys) != 4 || len(jwksIDs(t, a)) != 4 {
		t.Errorf("after rotation: %d stored, %d published, want 4", len(store.keys), len(jwksIDs(t, a)))
	}
}

// TestSealedRSAKeyFits: a generated RSA-2048 key sealed and base64
// encoded fits the stores' 1,024-character column and opens to the same
// key.
func TestSealedRSAKeyFits(t *testing.T) {
	k, err := GenerateAlg(jose.RS256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := NewSealer([]byte("a secret of at least thirty-two bytes"))
	created := time.UnixMilli(1893553445000)
	expires := created.Add(time.Hour)
	sealed, err := s.Seal(k, created, expires)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(base64.StdEncoding.EncodeToString(sealed)); n > 1024 {
		t.Errorf("sealed RSA key is %d base64 characters, over 1024", n)
	}
	got, err := s.Open(k.ID, sealed, created, expires)
	if err != nil || got.ID != k.ID || got.Alg != jose.RS256 {
		t.Fatalf("Open: %v %+v", err, got)
	}
	// It signs what the original verifies.
	r, _ := NewRing(RingConfig{Keys: []*Key{got}})
	raw, err := r.SignAs("RS256", map[string]any{"sub": "x"})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if _, err := tok.Verify(k.Public); err != nil {
		t.Errorf("a token signed by the reopened key does not verify with the original: %v", err)
	}
	if _, err := s.Open(k.ID, sealed[:len(sealed)-1], created, expires); err == nil {
		t.Error("a truncated sealed key opened")
	}
}
