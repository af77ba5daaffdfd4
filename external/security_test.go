package external

// Issue 16's attacks on the guard's external sources, each through the
// validator against mock authorization servers over real HTTP. These use
// only the API that existed before the fixes, so they run against the old
// code as well (where they fail).

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/caddy-oauth2/token"
	"github.com/tokengate/caddy-oauth2/validator"
)

// guard returns a function answering what the guard would: the status and
// the Retry-After header a bearer token gets, through a validator over a
// store that knows no token (with the given store deadline).
func guard(t *testing.T, storeTimeout time.Duration, sources ...validator.Source) func(raw string) int {
	t.Helper()
	v, err := validator.New(validator.Config{Tokens: noTokens{}, Hasher: tokenHasher, Timeout: storeTimeout, Sources: sources})
	if err != nil {
		t.Fatal(err)
	}
	return func(raw string) int {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		if _, d := v.CheckGrant(r); d != nil {
			return d.Status
		}
		return 200
	}
}

// Item 1: only an active access token, usable as a bearer token, passes.
func TestIntrospectionOnlyBearerAccessTokens(t *testing.T) {
	p := newIDP(t)
	exp := float64(time.Now().Add(time.Hour).Unix())
	base := func(extra map[string]any) map[string]any {
		a := map[string]any{"active": true, "sub": "alice", "client_id": "app", "aud": "api://orders", "iss": p.iss, "exp": exp}
		for k, v := range extra {
			if v == nil {
				delete(a, k)
			} else {
				a[k] = v
			}
		}
		return a
	}
	cases := map[string]struct {
		answer map[string]any
		want   int
	}{
		"plain access token":            {base(nil), 200},
		"token_type Bearer":             {base(map[string]any{"token_type": "Bearer"}), 200},
		"token_type bearer":             {base(map[string]any{"token_type": "bearer"}), 200},
		"token_type access_token":       {base(map[string]any{"token_type": "access_token"}), 200},
		"token_use access_token":        {base(map[string]any{"token_use": "access_token"}), 200},
		"Hydra refresh token":           {base(map[string]any{"token_use": "refresh_token"}), 401},
		"token_use id_token":            {base(map[string]any{"token_use": "id_token"}), 401},
		"token_type refresh_token":      {base(map[string]any{"token_type": "refresh_token"}), 401},
		"token_type DPoP":               {base(map[string]any{"token_type": "DPoP"}), 401},
		"token_type N_A":                {base(map[string]any{"token_type": "N_A"}), 401},
		"cnf jkt":                       {base(map[string]any{"cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}), 401},
		"cnf x5t#S256 with Bearer type": {base(map[string]any{"token_type": "Bearer", "cnf": map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}), 401},
		"iss an array":                  {base(map[string]any{"iss": []any{p.iss}}), 401},
		"iss a number":                  {base(map[string]any{"iss": 5}), 401},
		"exp a string":                  {base(map[string]any{"exp": fmt.Sprint(int64(exp))}), 401},
		"nbf a string":                  {base(map[string]any{"nbf": "0"}), 401},
		"iat an object":                 {base(map[string]any{"iat": map[string]any{}}), 401},
		"nbf in the future":             {base(map[string]any{"nbf": float64(time.Now().Add(time.Hour).Unix())}), 401},
		"active a string":               {base(map[string]any{"active": "true"}), 401},
	}
	for name, c := range cases {
		p.active[name] = c.answer
	}
	check := guard(t, 0, Introspection{p.introspector(t, time.Minute, nil)})
	for name, c := range cases {
		if got := check(name); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
}

// Item 2: a token asked about again and again costs one call.
func TestIntrospectionNegativeAnswersCached(t *testing.T) {
	p := newIDP(t)
	check := guard(t, 0, Introspection{p.introspector(t, 0, nil)})
	for range 20 {
		if got := check("made-up"); got != 401 {
			t.Fatalf("made-up token: %d", got)
		}
	}
	if n := p.introspectHits.Load(); n != 1 {
		t.Fatalf("%d introspections for one made-up token asked 20 times, want 1", n)
	}
}

// Item 2: one slow server neither delays nor fails the tokens of another,
// and each server's calls have its own deadline, not the store's.
func TestSlowIssuerDoesNotFailAnother(t *testing.T) {
	a, b := newIDP(t), newIDP(t)
	a.introspectDelay = 1500 * time.Millisecond
	b.active["b-token"] = map[string]any{"active": true, "sub": "bee"}
	a.active["a-token"] = map[string]any{"active": true, "sub": "ay"}
	// A store deadline shorter than A's answers, as with store_timeout on
	// a SQL store.
	check := guard(t, 500*time.Millisecond, Introspection{a.introspector(t, 0, nil), b.introspector(t, 0, nil)})
	start := time.Now()
	if got := check("b-token"); got != 200 {
		t.Fatalf("B's token while A is slow: %d after %v", got, time.Since(start))
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("B's token waited %v for A", took)
	}
	// A's own token: A's timeout (5s by default) applies, not the store's
	// 500ms.
	if got := check("a-token"); got != 200 {
		t.Fatalf("A's slow answer within its own timeout: %d", got)
	}
}

// Item 3: our own codes and refresh tokens never go to another server.
func TestOwnTokensNeverForwarded(t *testing.T) {
	p := newIDP(t)
	check := guard(t, 0, Introspection{p.introspector(t, 0, nil)})
	code, _ := token.New(token.CodePrefix)
	refresh, _ := token.New(token.RefreshPrefix)
	for _, raw := range []string{code, refresh, "crt_short", "cac_x", "cat_garbled"} {
		if got := check(raw); got != 401 {
			t.Errorf("%.8s…: %d, want 401", raw, got)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.received) != 0 {
		t.Fatalf("the introspection endpoint received %d of our own values", len(p.received))
	}
}

// Item 4: a JWT of another kind than an access token is refused.
func TestJWTOfAnotherKindRefused(t *testing.T) {
	p := newIDP(t)
	check := guard(t, 0, newJWT(t, p.config()))
	p.mu.Lock()
	k := p.keys[0]
	p.mu.Unlock()
	for _, c := range []struct {
		name, typ string
		extra     map[string]any
		want      int
	}{
		{"at+jwt", "at+jwt", nil, 200},
		{"application/at+jwt", "application/AT+JWT", nil, 200},
		{"JWT", "JWT", nil, 200},
		{"no typ", "", nil, 200},
		{"logout token", "logout+jwt", nil, 401},
		{"security event", "application/secevent+jwt", nil, 401},
		{"DPoP proof", "dpop+jwt", nil, 401},
		{"ID token (nonce)", "JWT", map[string]any{"nonce": "n-0S6_WzA2Mj"}, 401},
		{"ID token (at_hash)", "", map[string]any{"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}, 401},
		{"bound to a key (cnf)", "at+jwt", map[string]any{"cnf": map[string]any{"jkt": "x"}}, 401},
	} {
		if got := check(signTyp(t, k, jose.ES256, c.typ, p.claims(c.extra))); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// Item 7: an empty key set withdraws the keys; a server that keeps failing
// keeps them, but not past the max age.
func TestJWKSFreshnessBound(t *testing.T) {
	p := newIDP(t)
	cfg := p.config()
	now := time.Now()
	var mu sync.Mutex
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg.MinRefreshInterval = time.Second
	cfg.MaxAge = time.Hour
	check := guard(t, 0, newJWT(t, cfg))
	jwt := p.token(t, map[string]any{"exp": time.Now().Add(5 * time.Hour).Unix()})
	if got := check(jwt); got != 200 {
		t.Fatalf("first: %d", got)
	}

	t.Run("5xx keeps the keys until the max age, then 503", func(t *testing.T) {
		p.setDown(true)
		defer p.setDown(false)
		advance(50 * time.Minute)
		if got := check(jwt); got != 200 {
			t.Fatalf("server down, keys 50 min old: %d", got)
		}
		advance(11 * time.Minute)
		if got := check(jwt); got != 503 {
			t.Fatalf("server down, keys 61 min old: %d, want 503", got)
		}
		advance(2 * time.Second)
		if got := check(jwt); got != 503 {
			t.Fatalf("server down, keys 61 min old, cached verification: %d, want 503", got)
		}
		p.setDown(false)
		advance(2 * time.Second)
		if got := check(jwt); got != 200 {
			t.Fatalf("server back: %d", got)
		}
	})
	t.Run("200 with no usable key withdraws them", func(t *testing.T) {
		p.mu.Lock()
		p.jwksBody = `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`
		p.mu.Unlock()
		advance(time.Hour)
		if got := check(jwt); got != 401 {
			t.Fatalf("keys withdrawn: %d, want 401", got)
		}
		p.mu.Lock()
		p.jwksBody = `{"keys":[]}`
		p.mu.Unlock()
		advance(time.Hour)
		if got := check(jwt); got != 401 {
			t.Fatalf("empty set: %d, want 401", got)
		}
	})
}

// recorder is a server that records every request it receives.
type recorder struct {
	*httptest.Server
	hits   atomic.Int32
	mu     sync.Mutex
	bodies []string
	auth   []string
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.hits.Add(1)
		r.ParseForm()
		rec.mu.Lock()
		rec.bodies = append(rec.bodies, r.PostForm.Encode())
		rec.auth = append(rec.auth, r.Header.Get("Authorization"))
		rec.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"active": true, "sub": "mallory", "keys": []any{}})
	}))
	t.Cleanup(rec.Close)
	return rec
}

// Item 8: an introspection endpoint that redirects gets no second request:
// the token and our credentials go nowhere else.
func TestIntrospectionRedirectNotFollowed(t *testing.T) {
	p := newIDP(t)
	elsewhere := newRecorder(t)
	mover := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/introspect", http.StatusTemporaryRedirect)
	}))
	defer mover.Close()
	in := p.introspector(t, 0, nil)
	in.cfg.IntrospectionEndpoint = mover.URL + "/introspect"
	check := guard(t, 0, Introspection{in})
	if got := check("opaque"); got != 503 {
		t.Fatalf("redirected introspection: %d, want 503", got)
	}
	if n := elsewhere.hits.Load(); n != 0 {
		t.Fatalf("the redirect target received %d requests (auth %q)", n, elsewhere.auth)
	}
}

// Item 8: metadata and keys follow no redirect to another origin, and are
// never fetched over http for an https issuer.
func TestKeysFetchedOnlyFromTheIssuersOrigin(t *testing.T) {
	elsewhere := newRecorder(t)
	t.Run("cross-origin redirect of the metadata", func(t *testing.T) {
		p := newIDP(t)
		var issuer string
		// Another origin serving a document that names the issuer, and
		// keys of its own choosing.
		foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(map[string]string{"issuer": issuer, "jwks_uri": p.iss + "/jwks"})
		}))
		defer foreign.Close()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, foreign.URL+r.URL.Path, http.StatusFound)
		}))
		defer srv.Close()
		issuer = srv.URL
		cfg := p.config()
		cfg.Issuer = srv.URL
		check := guard(t, 0, newJWT(t, cfg))
		if got := check(p.token(t, map[string]any{"iss": srv.URL})); got != 503 {
			t.Fatalf("metadata from another origin: %d, want 503", got)
		}
	})
	t.Run("same-origin redirect of the keys", func(t *testing.T) {
		p := newIDP(t)
		cfg := p.config()
		cfg.JWKSURI = p.iss + "/moved" // redirects to /jwks
		check := guard(t, 0, newJWT(t, cfg))
		if got := check(p.token(t, nil)); got != 200 {
			t.Fatalf("keys moved within the origin: %d, want 200", got)
		}
	})
	t.Run("https issuer naming an http jwks_uri", func(t *testing.T) {
		p := newIDP(t)
		tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(map[string]string{"issuer": "https://" + r.Host, "jwks_uri": p.iss + "/jwks"})
		}))
		defer tlsSrv.Close()
		cfg := p.config()
		cfg.Issuer = tlsSrv.URL
		pool := x509.NewCertPool()
		pool.AddCert(tlsSrv.Certificate())
		cfg.Client = trustingClient(pool)
		check := guard(t, 0, newJWT(t, cfg))
		if got := check(p.token(t, map[string]any{"iss": tlsSrv.URL})); got != 503 {
			t.Fatalf("keys over http for an https issuer: %d, want 503", got)
		}
		if n := p.jwksHits.Load(); n != 0 {
			t.Fatalf("keys fetched over http %d times", n)
		}
	})
	t.Run("configured http endpoints of an https or non-loopback issuer", func(t *testing.T) {
		for _, cfg := range []Config{
			{Issuer: "https://idp.example", Audiences: []string{"a"}, JWKSURI: "http://idp.example/jwks"},
			{Issuer: "https://idp.example", Audiences: []string{"a"}, IntrospectionEndpoint: "http://idp.example/introspect", ClientID: "c"},
			{Issuer: "http://idp.example", Audiences: []string{"a"}},
			{Issuer: "http://127.0.0.1:1", Audiences: []string{"a"}, IntrospectionEndpoint: elsewhere.URL + "/x", ClientID: "c", JWKSURI: "http://idp.example/jwks"},
		} {
			_, errJ := NewJWT(cfg)
			_, errI := NewIntrospector(cfg)
			if errJ == nil && (cfg.IntrospectionEndpoint == "" || errI == nil) {
				t.Errorf("%+v accepted", cfg)
			}
		}
		ok := Config{Issuer: "http://127.0.0.1:1", Audiences: []string{"a"}, IntrospectionEndpoint: "http://localhost:2/x", ClientID: "c", JWKSURI: "http://[::1]:3/jwks"}
		if _, err := NewIntrospector(ok); err != nil {
			t.Errorf("http loopback issuer with loopback endpoints: %v", err)
		}
	})
}

// trustingClient is an outbound client that trusts pool's CAs.
func trustingClient(pool *x509.CertPool) *fetchClient {
	return newFetchClient(&tls.Config{RootCAs: pool})
}
