package bench_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// externalIdP is a stand-in for another authorization server: metadata, one
// ES256 key, and an introspection endpoint saying every token is active.
var externalIdP struct {
	srv           *httptest.Server
	key           *ecdsa.PrivateKey
	introspected  atomic.Int64
	jwksRequested atomic.Int64
}

func init() {
	moreRoutes = append(moreRoutes, externalRoutes)
}

// externalRoutes starts the stand-in and guards /external (JWT, and opaque
// tokens introspected with a cache) and /external-uncached (introspected
// every time) with it.
func externalRoutes(b *testing.B) []any {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	externalIdP.key = key
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		iss := "http://" + r.Host
		json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": iss + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		externalIdP.jwksRequested.Add(1)
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		externalIdP.introspected.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"active": true, "client_id": "app", "sub": "alice", "scope": "read", "exp": time.Now().Add(time.Hour).Unix()})
	})
	externalIdP.srv = httptest.NewServer(mux)
	iss := externalIdP.srv.URL
	guard := func(cache string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"handler": "oauth2_guard", "scopes": []string{"read"}, "issuers": []any{map[string]any{
			"issuer": iss, "audiences": []string{"api://bench"},
			"introspection_endpoint": iss + "/introspect", "introspection_client_id": "rs", "introspection_client_secret": "rs-secret",
			"introspection_cache": cache,
		}}})
		return b
	}
	ok := json.RawMessage(`{"handler":"static_response","body":"ok"}`)
	return []any{
		map[string]any{"match": []any{map[string]any{"path": []string{"/external"}}}, "handle": []any{guard("1h"), ok}},
		map[string]any{"match": []any{map[string]any{"path": []string{"/external-uncached"}}}, "handle": []any{guard("0s"), ok}},
	}
}

// externalJWT is a JWT of the stand-in.
func externalJWT(b *testing.B) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: externalIdP.key}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "k1"))
	if err != nil {
		b.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(map[string]any{
		"iss": externalIdP.srv.URL, "aud": "api://bench", "sub": "alice", "client_id": "app", "scope": "read",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).Serialize()
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkCaddyExternalIntrospectionCached is an opaque token of another
// server, its introspection answer cached: one hash and one map read.
func BenchmarkCaddyExternalIntrospectionCached(b *testing.B) {
	s := server(b, "opaque")
	before := externalIdP.introspected.Load()
	runWith(b, s, "/external", "Bearer opaque-external-token")
	if n := externalIdP.introspected.Load() - before; n > 1 {
		b.Fatalf("%d introspections for one token, want at most 1", n)
	}
}

// BenchmarkCaddyExternalIntrospectionUncached asks the endpoint (over
// loopback HTTP) on every request.
func BenchmarkCaddyExternalIntrospectionUncached(b *testing.B) {
	s := server(b, "opaque")
	runWith(b, s, "/external-uncached", "Bearer opaque-external-token")
}

// BenchmarkCaddyExternalJWT is a JWT of another server, verified against
// its cached keys (one ES256 verification per request).
func BenchmarkCaddyExternalJWT(b *testing.B) {
	s := server(b, "opaque")
	runWith(b, s, "/external", "Bearer "+externalJWT(b))
	if n := externalIdP.jwksRequested.Load(); n != 1 {
		b.Fatalf("keys fetched %d times, want 1", n)
	}
}
