package bench_test

// The guard and the token endpoint with 10,000 clients registered at
// runtime (RFC 7591, in the cache store) against the same with the one
// configured client: a registered client is one more map lookup, so the
// two should be within noise. Compare BenchmarkCaddyGuarded with
// BenchmarkCaddyGuardedRegistered, BenchmarkCaddyToken with
// BenchmarkCaddyTokenRegistered.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// registryFormat loads server with registration on; registeredClients are
// registered once.
const (
	registryFormat    = "opaque+registry"
	registeredClients = 10_000
)

// registered is one of the registered clients, made on first use.
var registered struct{ id, secret string }

func registryServer(b *testing.B) http.Handler {
	s := server(b, registryFormat)
	if registered.id != "" {
		return s
	}
	for i := range registeredClients {
		r := httptest.NewRequest(http.MethodPost, "/oauth2/register",
			strings.NewReader(`{"grant_types":["client_credentials"],"client_name":"bench `+fmt.Sprint(i)+`"}`))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		var resp struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &resp) != nil {
			b.Fatalf("registration %d: %d %s", i, w.Code, w.Body)
		}
		if i == registeredClients/2 {
			registered.id, registered.secret = resp.ClientID, resp.ClientSecret
		}
	}
	return s
}

func tokenRequest(id, secret string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=read"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return r
}

func issueAs(b *testing.B, s http.Handler, id, secret string) string {
	w := httptest.NewRecorder()
	s.ServeHTTP(w, tokenRequest(id, secret))
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &resp) != nil {
		b.Fatalf("token endpoint: %d %s", w.Code, w.Body)
	}
	return resp.AccessToken
}

func runToken(b *testing.B, s http.Handler, id, secret string) {
	issueAs(b, s, id, secret) // the secret memo
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			s.ServeHTTP(w, tokenRequest(id, secret))
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkCaddyToken is client_credentials issuance for the configured
// client, without registration.
func BenchmarkCaddyToken(b *testing.B) { runToken(b, server(b, "opaque"), "bench", "bench-secret") }

// BenchmarkCaddyTokenRegistered is the same for one of 10,000 registered
// clients.
func BenchmarkCaddyTokenRegistered(b *testing.B) {
	s := registryServer(b)
	runToken(b, s, registered.id, registered.secret)
}

// BenchmarkCaddyGuardedRegistered is BenchmarkCaddyGuarded with a token of
// one of 10,000 registered clients.
func BenchmarkCaddyGuardedRegistered(b *testing.B) {
	s := registryServer(b)
	runWith(b, s, "/guarded", "Bearer "+issueAs(b, s, registered.id, registered.secret))
}
