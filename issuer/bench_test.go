package issuer

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokengate/caddy-oauth2/token"
)

// BenchmarkClientCredentials measures issuance with a production-cost
// (10) bcrypt hash: the secret memo keeps bcrypt off the repeated path.
func BenchmarkClientCredentials(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("bench-secret"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	store := newFakeStore(newClock().Now)
	s, err := New(Config{
		Clients: map[string]*Client{"svc": {SecretHash: h, GrantTypes: []string{"client_credentials"}, Scopes: []string{"a"}}},
		Codes:   store, Tokens: store, Hasher: token.NewHasher([]byte("k")),
	})
	if err != nil {
		b.Fatal(err)
	}
	handler := s.Endpoint(TokenPath)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader("grant_type=client_credentials"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.SetBasicAuth("svc", "bench-secret")
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkClientCredentialsPrivateKeyJWT measures issuance to a
// private_key_jwt client: one ES256 verification and one PutOnce of the
// jti per request (the assertions are signed before the timer starts).
func BenchmarkClientCredentialsPrivateKeyJWT(b *testing.B) {
	clk := newClock()
	store := newFakeStore(clk.Now)
	kc := newKeyClient(b, "kj")
	s, err := New(Config{
		Issuer:  "https://auth.example",
		Clients: map[string]*Client{"kj": {JWKS: kc.jwks(b), GrantTypes: []string{"client_credentials"}, Scopes: []string{"a"}}},
		Codes:   store, Tokens: store, Hasher: token.NewHasher([]byte("k")),
		SingleUse: newFakeOnce(clk.Now), Now: clk.Now,
	})
	if err != nil {
		b.Fatal(err)
	}
	bodies := make([]string, b.N)
	for i := range bodies {
		bodies[i] = "grant_type=client_credentials&client_assertion_type=" + assertionTypeJWTBearer +
			"&client_assertion=" + kc.assertion(b, "https://auth.example", clk.Now(), nil)
	}
	handler := s.Endpoint(TokenPath)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(bodies[i]))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d %s", w.Code, w.Body)
		}
	}
}
