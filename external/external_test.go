package external

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
	"github.com/tokengate/caddy-oauth2/validator"
)

// idp is a fake authorization server: metadata, a key set that can be
// rotated or taken down, and an introspection endpoint answering from a map.
type idp struct {
	srv  *httptest.Server
	iss  string
	mu   sync.Mutex
	keys []*jose.JSONWebKey // private; the first signs
	down bool
	// active maps tokens to their introspection answer.
	active map[string]map[string]any

	metadataHits, jwksHits, introspectHits atomic.Int32
	requests                               atomic.Int32 // also while down
	// introspectDelay slows the introspection endpoint down.
	introspectDelay time.Duration
	// received are the tokens the introspection endpoint was asked about.
	received []string
	// inflight and maxInflight count the introspection calls under way.
	inflight, maxInflight atomic.Int32
	// jwksBody, when set, is served as the key set.
	jwksBody string
}

func newIDP(t testing.TB) *idp {
	p := &idp{active: map[string]map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		p.metadataHits.Add(1)
		json.NewEncoder(w).Encode(map[string]string{"issuer": p.iss, "jwks_uri": p.iss + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.jwksBody != "" {
			w.Write([]byte(p.jwksBody))
			return
		}
		set := jose.JSONWebKeySet{}
		for _, k := range p.keys {
			set.Keys = append(set.Keys, k.Public())
		}
		b, _ := json.Marshal(set)
		// A key of a type go-jose cannot parse must not spoil the set.
		b = []byte(strings.Replace(string(b), `"keys":[`, `"keys":[{"kty":"XYZ","kid":"odd"},`, 1))
		w.Write(b)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/jwks", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		p.introspectHits.Add(1)
		n := p.inflight.Add(1)
		defer p.inflight.Add(-1)
		for m := p.maxInflight.Load(); n > m && !p.maxInflight.CompareAndSwap(m, n); m = p.maxInflight.Load() {
		}
		p.mu.Lock()
		p.received = append(p.received, r.PostFormValue("token"))
		delay := p.introspectDelay
		p.mu.Unlock()
		time.Sleep(delay)
		id, secret, ok := r.BasicAuth()
		if !ok || id != "rs%3A1" || secret != "s%C3%A9cret" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		if r.PostFormValue("token") == "unparsable" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		answer, ok := p.active[r.PostFormValue("token")]
		p.mu.Unlock()
		if !ok {
			answer = map[string]any{"active": false}
		}
		json.NewEncoder(w).Encode(answer)
	})
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	p.iss = p.srv.URL
	p.rotate(t)
	return p
}

// rotate puts a new ECDSA key first.
func (p *idp) rotate(t testing.TB) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &jose.JSONWebKey{Key: priv, KeyID: fmt.Sprintf("k%d", time.Now().UnixNano()), Algorithm: string(jose.ES256), Use: "sig"}
	p.mu.Lock()
	p.keys = append([]*jose.JSONWebKey{k}, p.keys...)
	p.mu.Unlock()
}

func (p *idp) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// sign returns a JWT over claims signed with key (default: the current key).
func sign(t testing.TB, key *jose.JSONWebKey, alg jose.SignatureAlgorithm, claims map[string]any) string {
	return signTyp(t, key, alg, "at+jwt", claims)
}

// signTyp is sign with the given typ header ("" for none).
func signTyp(t testing.TB, key *jose.JSONWebKey, alg jose.SignatureAlgorithm, typ string, claims map[string]any) string {
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	if key.KeyID != "" {
		opts = opts.WithHeader("kid", key.KeyID)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key.Key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (p *idp) claims(extra map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": p.iss, "aud": []string{"api://orders", "other"}, "sub": "alice", "client_id": "app",
		"scp": []string{"read", "write"}, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func (p *idp) token(t testing.TB, extra map[string]any) string {
	p.mu.Lock()
	k := p.keys[0]
	p.mu.Unlock()
	return sign(t, k, jose.ES256, p.claims(extra))
}

func (p *idp) config() Config {
	return Config{Issuer: p.iss, Audiences: []string{"api://orders"}, MinRefreshInterval: time.Hour}
}

func newJWT(t *testing.T, cfg Config) *JWT {
	j, err := NewJWT(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJWTAccepted(t *testing.T) {
	p := newIDP(t)
	j := newJWT(t, p.config())
	raw := p.token(t, nil)
	if !j.Recognize(raw) {
		t.Fatal("its own issuer's JWT is not recognised")
	}
	g, err := j.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	tok := g.Token
	if !g.Foreign() || tok.Subject != "alice" || tok.ClientID != "app" || tok.Scope != "read write" || tok.Kind != stores.AccessToken {
		t.Fatalf("grant %+v, token %+v", g, tok)
	}
	if g.Claims["sub"] != "alice" || g.Claims["iss"] != p.iss {
		t.Fatalf("claims %v", g.Claims)
	}
	if p.metadataHits.Load() != 1 || p.jwksHits.Load() != 1 {
		t.Fatalf("metadata fetched %d times, keys %d times; want 1 and 1", p.metadataHits.Load(), p.jwksHits.Load())
	}
	// A second token uses the keys in memory.
	if _, err := j.Verify(context.Background(), p.token(t, map[string]any{"scope": "a b", "scp": nil})); err != nil {
		t.Fatal(err)
	}
	if p.jwksHits.Load() != 1 {
		t.Fatalf("keys fetched %d times, want 1", p.jwksHits.Load())
	}
}

func TestJWTRefused(t *testing.T) {
	p := newIDP(t)
	j := newJWT(t, p.config())
	p.mu.Lock()
	ecKey := p.keys[0]
	p.mu.Unlock()
	rsaPriv, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()

	good := p.token(t, nil)
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "alice", "mallo", 1))) + "." + parts[2]

	// alg none, and HS256 keyed with the public key's bytes (the classic
	// confusion), both under the issuer's kid.
	hdrNone := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"` + ecKey.KeyID + `"}`))
	none := hdrNone + "." + parts[1] + "."
	pub, _ := json.Marshal(ecKey.Public())
	hs := sign(t, &jose.JSONWebKey{Key: pub, KeyID: ecKey.KeyID}, jose.HS256, p.claims(nil))
	// The right key, the wrong algorithm for it: ES384 with a P-256 key.
	es384, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: ecKey.Key}, (&jose.SignerOptions{}).WithHeader("kid", ecKey.KeyID))
	if err == nil {
		if raw, err := jwt.Signed(es384).Claims(p.claims(nil)).Serialize(); err == nil {
			t.Run("alg differs from the key's", func(t *testing.T) { refused(t, j, raw) })
		}
	}

	for name, raw := range map[string]string{
		"tampered":           tampered,
		"alg none":           none,
		"HS256 confusion":    hs,
		"wrong audience":     p.token(t, map[string]any{"aud": "api://billing"}),
		"no audience":        p.token(t, map[string]any{"aud": nil}),
		"expired":            p.token(t, map[string]any{"exp": now.Add(-10 * time.Second).Unix()}),
		"no exp":             p.token(t, map[string]any{"exp": nil}),
		"not yet valid":      p.token(t, map[string]any{"nbf": now.Add(time.Minute).Unix()}),
		"another RSA key":    sign(t, &jose.JSONWebKey{Key: rsaPriv, KeyID: ecKey.KeyID}, jose.RS256, p.claims(nil)),
		"another EdDSA key":  sign(t, &jose.JSONWebKey{Key: edPriv}, jose.EdDSA, p.claims(nil)),
		"unknown kid":        sign(t, &jose.JSONWebKey{Key: rsaPriv, KeyID: "nobody"}, jose.RS256, p.claims(nil)),
		"signature stripped": parts[0] + "." + parts[1] + ".",
	} {
		t.Run(name, func(t *testing.T) { refused(t, j, raw) })
	}

	// Another issuer's token, even signed with this issuer's key, is not
	// this source's at all.
	other := p.token(t, map[string]any{"iss": "https://other.example"})
	if j.Recognize(other) {
		t.Fatal("another issuer's JWT is recognised")
	}
	for _, raw := range []string{"opaque-token", "a.b.c", "x." + base64.RawURLEncoding.EncodeToString([]byte(`["iss"]`)) + ".y", strings.Repeat("a", maxTokenLen) + ".b.c"} {
		if j.Recognize(raw) {
			t.Fatalf("%.20q recognised", raw)
		}
	}
	// Within the leeway, an expired token still passes; the validator
	// sees the leeway in ExpiresAt.
	g, err := j.Verify(context.Background(), p.token(t, map[string]any{"exp": now.Add(-2 * time.Second).Unix()}))
	if err != nil || !g.Token.ExpiresAt.After(now) {
		t.Fatalf("within the leeway: %v", err)
	}
}

func refused(t *testing.T, j *JWT, raw string) {
	t.Helper()
	if _, err := j.Verify(context.Background(), raw); !errors.Is(err, validator.ErrInvalidToken) {
		t.Fatalf("got %v, want invalid token", err)
	}
}

func TestJWTKeyRotation(t *testing.T) {
	p := newIDP(t)
	cfg := p.config()
	now := time.Now()
	var mu sync.Mutex
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg.MinRefreshInterval = 10 * time.Second
	j := newJWT(t, cfg)
	ctx := context.Background()
	old := p.token(t, map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	if _, err := j.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}

	// A token under a new key is picked up by one refetch, once the last
	// fetch is older than the minimum interval.
	p.rotate(t)
	rotated := p.token(t, map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	advance(11 * time.Second)
	if _, err := j.Verify(ctx, rotated); err != nil {
		t.Fatal(err)
	}
	if n := p.jwksHits.Load(); n != 2 {
		t.Fatalf("keys fetched %d times, want 2", n)
	}

	// Made-up key ids, many of them, cost at most one fetch per interval.
	p.rotate(t)
	rotated2 := p.token(t, map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	advance(time.Second)
	for range 50 {
		refused(t, j, rotated2)
	}
	if n := p.jwksHits.Load(); n != 2 {
		t.Fatalf("keys fetched %d times within the interval, want 2", n)
	}
	advance(10 * time.Second)
	if _, err := j.Verify(ctx, rotated2); err != nil {
		t.Fatal(err)
	}

	// The server down: known keys keep verifying, and the failed refetch
	// keeps the last good set.
	p.setDown(true)
	advance(time.Minute)
	refused(t, j, sign(t, &jose.JSONWebKey{Key: mustEC(t), KeyID: "new"}, jose.ES256, p.claims(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})))
	for _, raw := range []string{old, rotated, rotated2} {
		if _, err := j.Verify(ctx, raw); err != nil {
			t.Fatalf("with the server down: %v", err)
		}
	}
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestJWTServerDownAtFirst(t *testing.T) {
	p := newIDP(t)
	p.setDown(true)
	j := newJWT(t, p.config())
	raw := p.token(t, nil)
	if _, err := j.Verify(context.Background(), raw); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want unavailable", err)
	}
	// Retried after a second, not at once, and works when the server is
	// back.
	hits := p.metadataHits.Load() + p.jwksHits.Load()
	if _, err := j.Verify(context.Background(), raw); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want unavailable", err)
	}
	if n := p.metadataHits.Load() + p.jwksHits.Load(); n != hits {
		t.Fatalf("%d fetches within a second of a failure, want none", n-hits)
	}
	p.setDown(false)
	time.Sleep(failureRetry + 100*time.Millisecond)
	if _, err := j.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
}

func TestDiscoveryChecksIssuer(t *testing.T) {
	p := newIDP(t)
	cfg := p.config()
	cfg.Issuer = p.iss + "/" // the metadata names p.iss
	j := newJWT(t, cfg)
	if _, err := j.Verify(context.Background(), p.token(t, map[string]any{"iss": cfg.Issuer})); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want unavailable", err)
	}
	// An explicit jwks_uri needs no metadata.
	cfg.JWKSURI = p.iss + "/jwks"
	j = newJWT(t, cfg)
	if _, err := j.Verify(context.Background(), p.token(t, map[string]any{"iss": cfg.Issuer})); err != nil {
		t.Fatal(err)
	}
}

func TestNewRequiresAudience(t *testing.T) {
	if _, err := NewJWT(Config{Issuer: "https://idp.example"}); err == nil {
		t.Fatal("no error without an audience")
	}
	if _, err := NewIntrospector(Config{Issuer: "https://idp.example", IntrospectionEndpoint: "ftp://x", ClientID: "a"}); err == nil {
		t.Fatal("no error for a non-http endpoint")
	}
	if _, err := NewIntrospector(Config{Issuer: "https://idp.example", IntrospectionEndpoint: "https://x/i"}); err == nil {
		t.Fatal("no error without a client")
	}
}

func (p *idp) introspector(t testing.TB, ttl time.Duration, now func() time.Time) *Introspector {
	cfg := p.config()
	cfg.IntrospectionEndpoint = p.iss + "/introspect"
	cfg.ClientID, cfg.ClientSecret = "rs:1", "sécret"
	cfg.CacheTTL = ttl
	cfg.Now = now
	in, err := NewIntrospector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestIntrospection(t *testing.T) {
	p := newIDP(t)
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	in := p.introspector(t, 30*time.Second, clock)
	src := Introspection{in}
	ctx := context.Background()
	p.active["opaque-1"] = map[string]any{"active": true, "sub": "bob", "client_id": "app", "scope": "read", "aud": "api://orders", "iss": p.iss, "exp": float64(now.Add(time.Hour).Unix())}
	p.active["refresh"] = map[string]any{"active": true, "token_type": "refresh_token", "exp": float64(now.Add(time.Hour).Unix())}
	p.active["elsewhere"] = map[string]any{"active": true, "aud": []any{"api://billing"}}
	p.active["other-iss"] = map[string]any{"active": true, "iss": "https://other.example"}

	if !src.Recognize("opaque-1") || src.Recognize("") || src.Recognize(strings.Repeat("x", maxTokenLen+1)) {
		t.Fatal("Recognize")
	}
	if src.Recognize(p.token(t, map[string]any{"iss": "https://other.example"})) {
		t.Fatal("another issuer's JWT would be sent to this server's introspection endpoint")
	}
	g, err := src.Verify(ctx, "opaque-1")
	if err != nil {
		t.Fatal(err)
	}
	if !g.Foreign() || g.Token.Subject != "bob" || g.Token.Scope != "read" || g.Claims["sub"] != "bob" {
		t.Fatalf("grant %+v %+v", g, g.Token)
	}
	// Cached: no second call, until the TTL is over.
	for range 5 {
		if _, err := src.Verify(ctx, "opaque-1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.introspectHits.Load(); n != 1 {
		t.Fatalf("%d introspections, want 1", n)
	}
	// Revoked at the server: still cached until the TTL, then refused.
	delete(p.active, "opaque-1")
	advance(29 * time.Second)
	if _, err := src.Verify(ctx, "opaque-1"); err != nil {
		t.Fatal(err)
	}
	advance(time.Second)
	if _, err := src.Verify(ctx, "opaque-1"); !errors.Is(err, validator.ErrInvalidToken) {
		t.Fatalf("revoked: got %v", err)
	}

	// Never cached past the token's own exp.
	p.active["short"] = map[string]any{"active": true, "client_id": "app", "exp": float64(clock().Add(5 * time.Second).Unix())}
	if _, err := src.Verify(ctx, "short"); err != nil {
		t.Fatal(err)
	}
	before := p.introspectHits.Load()
	advance(4 * time.Second)
	src.Verify(ctx, "short")
	advance(time.Second)
	src.Verify(ctx, "short")
	if n := p.introspectHits.Load() - before; n != 1 {
		t.Fatalf("%d introspections around exp, want 1", n)
	}

	for _, raw := range []string{"unknown", "unparsable", "refresh", "elsewhere", "other-iss"} {
		if _, err := src.Verify(ctx, raw); !errors.Is(err, validator.ErrInvalidToken) {
			t.Fatalf("%s: got %v, want invalid token", raw, err)
		}
	}

	// Down: never a pass, and not a refusal either.
	p.active["opaque-2"] = map[string]any{"active": true}
	p.setDown(true)
	if _, err := src.Verify(ctx, "opaque-2"); !errors.Is(err, ErrUnavailable) || errors.Is(err, validator.ErrInvalidToken) {
		t.Fatalf("down: got %v", err)
	}
	// Our own credentials refused: a configuration fault, 503 too.
	p.setDown(false)
	in.cfg.ClientSecret = "wrong"
	if _, err := src.Verify(ctx, "opaque-2"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("bad client secret: got %v", err)
	}
}

func TestIntrospectionChain(t *testing.T) {
	a, b := newIDP(t), newIDP(t)
	b.active["b-token"] = map[string]any{"active": true, "sub": "bee"}
	src := Introspection{a.introspector(t, 0, nil), b.introspector(t, 0, nil)}
	g, err := src.Verify(context.Background(), "b-token")
	if err != nil || g.Token.Subject != "bee" {
		t.Fatalf("second server's token: %v", err)
	}
	// The first server down and the second saying no: the token may be the
	// first's, so 503.
	a.setDown(true)
	if _, err := src.Verify(context.Background(), "nobody"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want unavailable", err)
	}
	a.setDown(false)
	if _, err := src.Verify(context.Background(), "nobody"); !errors.Is(err, validator.ErrInvalidToken) {
		t.Fatalf("got %v, want invalid", err)
	}
}

func TestAnswerCacheBounded(t *testing.T) {
	p := newIDP(t)
	in := p.introspector(t, time.Hour, nil)
	in.cache = validator.NewMemo[cached](10)
	for i := range 25 {
		raw := fmt.Sprintf("tok-%d", i)
		p.active[raw] = map[string]any{"active": true}
		if _, err := in.Introspect(context.Background(), raw); err != nil {
			t.Fatal(err)
		}
	}
	if n := in.cache.Len(); n != 10 {
		t.Fatalf("%d cached answers, want 10", n)
	}
	// Keyed by the token's hash, never the raw token.
	if _, _, ok := in.cache.Get(sha256.Sum256([]byte("tok-24"))); !ok {
		t.Fatal("the last answer is not cached under the token's SHA-256")
	}
}

// noTokens is a store that knows no token: only the sources answer.
type noTokens struct{ stores.TokenStore }

func (noTokens) LookupToken(context.Context, stores.Kind, string) (*stores.Token, error) {
	return nil, stores.ErrNotFound
}

var tokenHasher = token.NewHasher([]byte("test secret"))

// TestThroughValidator checks the statuses the guard answers.
func TestThroughValidator(t *testing.T) {
	p := newIDP(t)
	p.active["opaque"] = map[string]any{"active": true, "scope": "read", "exp": float64(time.Now().Add(time.Hour).Unix())}
	j := newJWT(t, p.config())
	v, err := validator.New(validator.Config{
		Tokens: noTokens{}, Hasher: tokenHasher, Scopes: []string{"read"},
		Sources: []validator.Source{j, Introspection{p.introspector(t, time.Minute, nil)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(raw string) int {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		_, d := v.CheckGrant(r)
		if d == nil {
			return 200
		}
		return d.Status
	}
	for raw, want := range map[string]int{
		p.token(t, nil):                        200,
		p.token(t, map[string]any{"scp": nil}): 403,
		p.token(t, map[string]any{"aud": "x"}): 401,
		"opaque":                               200,
		"unknown":                              401,
	} {
		if got := check(raw); got != want {
			t.Errorf("%.30s: %d, want %d", raw, got, want)
		}
	}
	p.setDown(true)
	if got := check("opaque"); got != 200 {
		t.Errorf("cached opaque token with the server down: %d", got)
	}
	if got := check("opaque-uncached"); got != 503 {
		t.Errorf("uncached opaque token with the server down: %d", got)
	}
	if got := check(p.token(t, nil)); got != 200 {
		t.Errorf("JWT with the server down: %d", got)
	}
}

func TestJWTKeyWithdrawn(t *testing.T) {
	p := newIDP(t)
	cfg := p.config()
	now := time.Now()
	var mu sync.Mutex
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg.MinRefreshInterval = 10 * time.Second
	cfg.MaxAge = time.Hour
	j := newJWT(t, cfg)
	ctx := context.Background()
	exp := map[string]any{"exp": time.Now().Add(3 * time.Hour).Unix()}
	old := p.token(t, exp)
	if _, err := j.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	// The server rotates and withdraws the old key.
	p.rotate(t)
	p.mu.Lock()
	p.keys = p.keys[:1]
	p.mu.Unlock()
	advance(29 * time.Minute)
	if _, err := j.Verify(ctx, old); err != nil {
		t.Fatalf("within half the max age: %v", err)
	}
	if n := p.jwksHits.Load(); n != 1 {
		t.Fatalf("keys fetched %d times within half the max age, want 1", n)
	}
	advance(time.Minute)
	refused(t, j, old)
	if _, err := j.Verify(ctx, p.token(t, exp)); err != nil {
		t.Fatal(err)
	}
	if n := p.jwksHits.Load(); n != 2 {
		t.Fatalf("keys fetched %d times, want 2", n)
	}
	// Due again with the server down: the set held stays in use until
	// the max age, and the failed fetch is not retried on every request.
	p.setDown(true)
	advance(40 * time.Minute)
	before := p.requests.Load()
	for range 5 {
		if _, err := j.Verify(ctx, p.token(t, exp)); err != nil {
			t.Fatalf("server down, set due: %v", err)
		}
	}
	if n := p.requests.Load() - before; n != 1 {
		t.Fatalf("%d requests to a down server, want 1", n)
	}
}

func TestJWTVerifiedCacheEndsAtExp(t *testing.T) {
	p := newIDP(t)
	cfg := p.config()
	now := time.Now()
	var mu sync.Mutex
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	j := newJWT(t, cfg)
	raw := p.token(t, map[string]any{"exp": now.Add(time.Minute).Unix()})
	for range 3 {
		if _, err := j.Verify(context.Background(), raw); err != nil {
			t.Fatal(err)
		}
	}
	if j.verified.Len() != 1 {
		t.Fatalf("%d tokens remembered, want 1", j.verified.Len())
	}
	advance(time.Minute + cfg.Leeway + 5*time.Second)
	refused(t, j, raw)
}

func TestSharedKeys(t *testing.T) {
	p := newIDP(t)
	keys, err := NewKeys(p.config())
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.config()
	cfg.Keys = keys
	a, b := newJWT(t, cfg), newJWT(t, cfg)
	if _, err := a.Verify(context.Background(), p.token(t, nil)); err != nil {
		t.Fatal(err)
	}
	// The second source, of a reloaded configuration say, needs no fetch:
	// it verifies with the server down.
	p.setDown(true)
	if _, err := b.Verify(context.Background(), p.token(t, nil)); err != nil {
		t.Fatal(err)
	}
	if n := p.jwksHits.Load(); n != 1 {
		t.Fatalf("keys fetched %d times, want 1", n)
	}
	cfg.Issuer = "https://other.example"
	if _, err := NewJWT(cfg); err == nil {
		t.Fatal("keys of another issuer accepted")
	}
}

func TestIntrospectionAskedOnceForConcurrentRequests(t *testing.T) {
	p := newIDP(t)
	p.introspectDelay = 200 * time.Millisecond
	p.active["popular"] = map[string]any{"active": true, "sub": "bob"}
	p.active["left"] = map[string]any{"active": true}
	in := p.introspector(t, time.Minute, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			g, err := in.Introspect(context.Background(), "popular")
			if err == nil && g.Token.Subject != "bob" {
				err = fmt.Errorf("subject %q", g.Token.Subject)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := p.introspectHits.Load(); n != 1 {
		t.Fatalf("%d introspections for 20 concurrent requests, want 1", n)
	}

	// An asker whose client leaves: the one waiting asks again rather than
	// take the cancellation for an outage.
	ctx, cancel := context.WithCancel(context.Background())
	leftErr := make(chan error, 1)
	go func() { _, err := in.Introspect(ctx, "left"); leftErr <- err }()
	time.Sleep(20 * time.Millisecond)
	go func() { time.Sleep(30 * time.Millisecond); cancel() }()
	if _, err := in.Introspect(context.Background(), "left"); err != nil {
		t.Errorf("waiter of a cancelled asker: %v", err)
	}
	if err := <-leftErr; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled asker: %v", err)
	}
}
