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
