// Package bench holds the load benchmarks driven by run.sh and, here, a Go
// benchmark of the guard through Caddy's own middleware chain: a plain route
// and the same route behind oauth2_guard, served by one real caddyhttp.Server
// without a network in between, so the difference is the guard alone.
package bench_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/crypto/bcrypt"

	_ "github.com/tokengate/caddy-oauth2"
)

var (
	srv    *caddyhttp.Server
	srvFmt string // the access_token_format srv was loaded with
)

// moreRoutes add routes of other files' benchmarks to the one server.
var moreRoutes []func(b *testing.B) []any

func TestMain(m *testing.M) {
	code := m.Run()
	if srv != nil {
		_ = caddy.Stop()
	}
	os.Exit(code)
}

// server loads the config once per access token format: the cache store,
// a confidential client, and the routes /oauth2/*, /plain and /guarded.
func server(b *testing.B, format string) *caddyhttp.Server {
	if srv != nil && srvFmt == format {
		return srv
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("bench-secret"), bcrypt.MinCost)
	if err != nil {
		b.Fatal(err)
	}
	ok := json.RawMessage(`{"handler":"static_response","body":"ok"}`)
	oauth2 := map[string]any{
		"token_secret":        "bench-token-secret-0123456789abcdef0123456789",
		"access_token_format": format,
		"clients": []any{map[string]any{
			"id": "bench", "secret_hash": string(hash),
			"grant_types": []string{"client_credentials"}, "scopes": []string{"read"},
		}},
	}
	if format == registryFormat { // see registry_test.go
		oauth2["access_token_format"] = "opaque"
		oauth2["registration"] = map[string]any{"open": true, "scopes": []string{"read"},
			"grant_types": []string{"client_credentials"}, "max_clients": 2 * registeredClients, "rate_limit": 10 * registeredClients}
	}
	cfg := map[string]any{
		"admin":   map[string]any{"disabled": true},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"apps": map[string]any{
			"oauth2": oauth2,
			"http": map[string]any{"servers": map[string]any{"bench": map[string]any{
				"listen":          []string{"127.0.0.1:0"},
				"automatic_https": map[string]any{"disable": true},
				"routes": []any{
					map[string]any{"match": []any{map[string]any{"path": []string{"/oauth2/*"}}},
						"handle": []any{json.RawMessage(`{"handler":"oauth2_server"}`)}},
					map[string]any{"match": []any{map[string]any{"path": []string{"/plain"}}},
						"handle": []any{ok}},
					map[string]any{"match": []any{map[string]any{"path": []string{"/guarded"}}},
						"handle": []any{json.RawMessage(`{"handler":"oauth2_guard","scopes":["read"]}`), ok}},
				},
			}}},
		},
	}
	server := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)["bench"].(map[string]any)
	for _, route := range moreRoutes {
		server["routes"] = append(server["routes"].([]any), route(b)...)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := caddy.Load(raw, true); err != nil {
		b.Fatal(err)
	}
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		b.Fatal(err)
	}
	srv, srvFmt = app.(*caddyhttp.App).Servers["bench"], format
	return srv
}

// issue gets an access token from the server's token endpoint.
func issue(b *testing.B, s http.Handler) string {
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=read"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("bench", "bench-secret")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &resp) != nil || resp.AccessToken == "" {
		b.Fatalf("token endpoint: %d %s", w.Code, w.Body)
	}
	return resp.AccessToken
}

// run sends GET path under the opaque configuration, with a fresh access
// token when bearer is set.
func run(b *testing.B, path string, bearer bool) { runFormat(b, "opaque", path, bearer) }

// runFormat is run under the configuration of access_token_format format.
func runFormat(b *testing.B, format, path string, bearer bool) {
	s := server(b, format)
	auth := ""
	if bearer {
		auth = "Bearer " + issue(b, s)
	}
	runWith(b, s, path, auth)
}

// runWith sends GET path to s with the Authorization header auth, if any.
func runWith(b *testing.B, s http.Handler, path, auth string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodGet, path, nil)
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkCaddyPlain is the baseline: a request through Caddy's server to a
// static response.
func BenchmarkCaddyPlain(b *testing.B) { run(b, "/plain", false) }

// BenchmarkCaddyPlainBearer sends the guarded benchmark's very request,
// Authorization header included, to the plain route: against it the
// guarded benchmark differs by the guard alone, not by the cost of a
// request header (net/http parses it, Caddy clones it: four allocations).
func BenchmarkCaddyPlainBearer(b *testing.B) { run(b, "/plain", true) }

// BenchmarkCaddyGuarded is the same route behind oauth2_guard with a live
// token in the cache store.
func BenchmarkCaddyGuarded(b *testing.B) { run(b, "/guarded", true) }

// BenchmarkCaddyPlainJWTConfig is the baseline under the JWT configuration,
// to compare BenchmarkCaddyGuardedJWT with side by side.
func BenchmarkCaddyPlainJWTConfig(b *testing.B) { runFormat(b, "jwt", "/plain", false) }

// BenchmarkCaddyGuardedJWT is the guarded route with a JWT access token of
// the app (access_token_format jwt): the signature is checked once, then
// each request costs a SHA-256 of the token, a map read and the revocation
// check, with no store read.
func BenchmarkCaddyGuardedJWT(b *testing.B) { runFormat(b, "jwt", "/guarded", true) }
