package validator

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// TestJWTSource: our JWT passes with its claims and the stored token; a
// revoked jti is refused though the signature was checked before; a store
// that cannot answer is a 503, never a pass; foreign and expired JWTs are
// refused.
func TestJWTSource(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	k, err := jwt.NewKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := jwt.NewRing(jwt.RingConfig{Keys: []*jwt.Key{k}})
	if err != nil {
		t.Fatal(err)
	}
	h := token.NewHasher([]byte("test secret"))
	f := &fakeTokens{tokens: map[string]*stores.Token{}}
	src, err := NewJWTSource(JWTConfig{Ring: ring, Issuer: func(iss string) bool { return iss == "https://as.example" },
		Audience: func(aud string) bool { return aud == "api" }, Tokens: f, Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(Config{Tokens: f, Hasher: h, Scopes: []string{"read"}, Sources: []Source{src}})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(jti, iss, aud string, exp time.Time) string {
		raw, err := ring.Sign(&jwt.Claims{Issuer: iss, Subject: "alice", Audience: []string{aud}, ClientID: "c", Scope: "read",
			IssuedAt: josejwt.NumericDate(time.Now().Unix()), Expiry: josejwt.NumericDate(exp.Unix()), ID: jti})
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[h.Key(jti)] = &stores.Token{Kind: stores.AccessToken, ClientID: "c", Subject: "alice", Scope: "read", ExpiresAt: exp}
		return raw
	}
	check := func(raw string) (Grant, *Denial) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		return v.CheckGrant(r)
	}
	good := mint("jti-good", "https://as.example", "api", time.Now().Add(time.Hour))
	for range 2 { // the second answer comes from memory
		g, d := check(good)
		if d != nil || g.Token.Subject != "alice" || g.Claims["sub"] != "alice" || g.Claims["jti"] != "jti-good" {
			t.Fatalf("our JWT: %+v %+v", g, d)
		}
	}
	f.err = stores.Unavailable(errors.New("down"))
	if _, d := check(good); d == nil || d.Status != http.StatusServiceUnavailable {
		t.Fatalf("store down: %+v, want 503", d)
	}
	f.err = nil
	delete(f.tokens, h.Key("jti-good"))
	if _, d := check(good); d == nil || d.Status != http.StatusUnauthorized {
		t.Fatalf("revoked jti: %+v, want 401", d)
	}
	for name, raw := range map[string]string{
		"foreign issuer": mint("jti-f", "https://other.example", "api", time.Now().Add(time.Hour)),
		"wrong audience": mint("jti-a", "https://as.example", "other", time.Now().Add(time.Hour)),
		"expired":        mint("jti-e", "https://as.example", "api", time.Now().Add(-time.Minute)),
	} {
		if _, d := check(raw); d == nil || d.Status != http.StatusUnauthorized {
			t.Errorf("%s: %+v, want 401", name, d)
		}
	}
}

// TestJWTSourceBounded: past MaxEntries verified tokens, entries are
// dropped, and a dropped token is simply checked again.
func TestJWTSourceBounded(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := jwt.NewKey(priv)
	ring, _ := jwt.NewRing(jwt.RingConfig{Keys: []*jwt.Key{k}})
	h := token.NewHasher([]byte("test secret"))
	f := &fakeTokens{tokens: map[string]*stores.Token{}}
	src, err := NewJWTSource(JWTConfig{Ring: ring, Issuer: func(string) bool { return true },
		Audience: func(string) bool { return true }, Tokens: f, Hasher: h, MaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	var raws []string
	for i := range 10 {
		jti := "jti-" + string(rune('a'+i))
		raw, err := ring.Sign(&jwt.Claims{Issuer: "i", Audience: []string{"a"}, ID: jti,
			Expiry: josejwt.NumericDate(time.Now().Add(time.Hour).Unix())})
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[h.Key(jti)] = &stores.Token{Kind: stores.AccessToken, ExpiresAt: time.Now().Add(time.Hour)}
		raws = append(raws, raw)
	}
	for round := range 2 {
		for _, raw := range raws {
			if _, err := src.Verify(t.Context(), raw); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if n := src.verified.Len(); n > 3 {
				t.Fatalf("%d verified tokens kept, want at most 3", n)
			}
		}
	}
}
