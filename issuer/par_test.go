package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/caddy-oauth2/dpop"
	"github.com/tokengate/caddy-oauth2/fetch"
	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// fakeOnce is an in-memory stores.SingleUse on the test clock.
type fakeOnce struct {
	now  func() time.Time
	mu   sync.Mutex
	vals map[string]*onceVal
}

type onceVal struct {
	v    []byte
	exp  time.Time
	used bool
}

func newFakeOnce(now func() time.Time) *fakeOnce {
	return &fakeOnce{now: now, vals: map[string]*onceVal{}}
}

func (f *fakeOnce) PutOnce(_ context.Context, key string, value []byte, exp time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v := f.vals[key]; v != nil && f.now().Before(v.exp) {
		return stores.ErrExists
	}
	f.vals[key] = &onceVal{v: value, exp: exp}
	return nil
}

func (f *fakeOnce) TakeOnce(_ context.Context, key string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.vals[key]
	switch {
	case v == nil || !f.now().Before(v.exp):
		return nil, stores.ErrNotFound
	case v.used:
		return nil, stores.ErrConsumed
	}
	v.used = true
	return v.v, nil
}

func (f *fakeOnce) PurgeExpiredOnce(context.Context, int) (int64, error) { return 0, nil }

// keyClient is a private_key_jwt client with an inline JWKS.
type keyClient struct {
	id   string
	priv crypto.Signer
	kid  string
}

func newKeyClient(t testing.TB, id string) *keyClient {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &keyClient{id: id, priv: priv, kid: "k1"}
}

func (k *keyClient) jwks(t testing.TB) []byte {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.priv.Public(), KeyID: k.kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertion signs claims (defaults filled in unless overridden; a nil
// value deletes the claim).
func (k *keyClient) assertion(t testing.TB, aud string, now time.Time, over map[string]any) string {
	t.Helper()
	claims := map[string]any{"iss": k.id, "sub": k.id, "aud": aud, "exp": now.Add(time.Minute).Unix(),
		"iat": now.Unix(), "jti": randomJTI()}
	for c, v := range over {
		if v == nil {
			delete(claims, c)
		} else {
			claims[c] = v
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv},
		(&jose.SignerOptions{}).WithHeader("kid", k.kid).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// randomJTI is a fresh assertion or proof jti.
func randomJTI() string { return token.NewID() }

// parEnv is a server with a SingleUse store and a private_key_jwt client
// "kj" beside the usual test clients.
func parEnv(t *testing.T, mods ...func(*Config)) (*env, *keyClient) {
	t.Helper()
	kc := newKeyClient(t, "kj")
	clk := newClock()
	once := newFakeOnce(clk.Now)
	e := newEnvClock(t, clk, append([]func(*Config){func(c *Config) {
		c.SingleUse = once
		c.Clients["kj"] = &Client{JWKS: kc.jwks(t), RedirectURIs: []string{"https://kj.example/cb"}, Scopes: []string{"read"}, SkipConsent: true}
	}}, mods...)...)
	return e, kc
}

func (e *env) assertionForm(kc *keyClient, over map[string]any, kv ...string) url.Values {
	f := url.Values{"client_assertion_type": {assertionTypeJWTBearer},
		"client_assertion": {kc.assertion(e.t, e.ts.URL, e.clock.Now(), over)}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return f
}

func TestPARFlow(t *testing.T) {
	e, kc := parEnv(t)
	verifier, challenge := pkce()
	res := e.post(PARPath, e.assertionForm(kc, nil, "response_type", "code", "scope", "read", "state", "st1",
		"code_challenge", challenge, "code_challenge_method", "S256", "redirect_uri", "https://kj.example/cb"))
	if res.status != http.StatusCreated {
		t.Fatalf("PAR: %d %s", res.status, res.body)
	}
	body := res.json(t)
	uri, _ := body["request_uri"].(string)
	if !strings.HasPrefix(uri, RequestURIPrefix) || body["expires_in"] != float64(60) {
		t.Fatalf("PAR answer %v", body)
	}
	// Only the pushed parameters count: the scope here is ignored.
	res = e.authorize(url.Values{"client_id": {"kj"}, "request_uri": {uri}, "scope": {"admin"}}, testUser)
	if res.status != http.StatusFound {
		t.Fatalf("authorize: %d %s", res.status, res.body)
	}
	_, q := res.location(t)
	if q.Get("state") != "st1" || q.Get("code") == "" || q.Get("iss") != e.ts.URL {
		t.Fatalf("redirect %v", q)
	}
	tok := e.post(TokenPath, e.assertionForm(kc, nil, "grant_type", "authorization_code", "code", q.Get("code"),
		"code_verifier", verifier, "redirect_uri", "https://kj.example/cb"))
	if tok.status != http.StatusOK || tok.json(t)["scope"] != "read" {
		t.Fatalf("token: %d %s", tok.status, tok.body)
	}
	// Used twice: refused, no redirect.
	res = e.authorize(url.Values{"client_id": {"kj"}, "request_uri": {uri}}, testUser)
	if res.status != http.StatusBadRequest || res.header.Get("Location") != "" {
		t.Fatalf("second use: %d %v", res.status, res.header)
	}
}

func TestPARRefusals(t *testing.T) {
	e, kc := parEnv(t)
	push := func(kv ...string) result {
		return e.post(PARPath, e.assertionForm(kc, nil, append([]string{"response_type", "code"}, kv...)...))
	}
	for name, c := range map[string]struct {
		res  result
		code string
	}{
		"unregistered redirect": {push("redirect_uri", "https://evil.example/cb"), "invalid_request"},
		"bad scope":             {push("scope", "admin"), "invalid_scope"},
		"plain pkce":            {push("code_challenge", strings.Repeat("a", 43), "code_challenge_method", "plain"), "invalid_request"},
		"request_uri pushed":    {push("request_uri", RequestURIPrefix+"x"), "invalid_request"},
		"bad response_type":     {e.post(PARPath, e.assertionForm(kc, nil, "response_type", "token")), "unsupported_response_type"},
		"no client auth":        {e.post(PARPath, url.Values{"client_id": {"kj"}, "response_type": {"code"}}), "invalid_client"},
		"wrong secret":          {e.post(PARPath, url.Values{"response_type": {"code"}}, "conf", "nope"), "invalid_client"},
	} {
		if got := c.res.json(t)["error"]; got != c.code || c.res.status < 400 {
			t.Errorf("%s: %d %v, want %s", name, c.res.status, got, c.code)
		}
	}
	// Another client's request_uri, then expiry.
	_, challenge := pkce()
	res := e.post(PARPath, url.Values{"response_type": {"code"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}, "conf", confSecret)
	if res.status != http.StatusCreated {
		t.Fatalf("PAR conf: %d %s", res.status, res.body)
	}
	uri := res.json(t)["request_uri"].(string)
	if res := e.authorize(url.Values{"client_id": {"kj"}, "request_uri": {uri}}, testUser); res.status != http.StatusBadRequest ||
		!strings.Contains(res.body, "another application") {
		t.Fatalf("other client: %d %s", res.status, res.body)
	}
	res = e.post(PARPath, url.Values{"response_type": {"code"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}, "conf", confSecret)
	uri = res.json(t)["request_uri"].(string)
	e.clock.Advance(PARLifetime)
	if res := e.authorize(url.Values{"client_id": {"conf"}, "request_uri": {uri}}, testUser); res.status != http.StatusBadRequest ||
		!strings.Contains(res.body, "expired") {
		t.Fatalf("expired: %d %s", res.status, res.body)
	}
	if res := e.authorize(url.Values{"client_id": {"conf"}, "request_uri": {RequestURIPrefix + "made-up"}}, testUser); res.status != http.StatusBadRequest {
		t.Fatalf("made up: %d", res.status)
	}
}

func TestRequirePAR(t *testing.T) {
	e, _ := parEnv(t, func(c *Config) { c.Clients["conf"].RequirePAR = true })
	_, challenge := pkce()
	res := e.authorize(authParams("conf", "code_challenge", challenge, "code_challenge_method", "S256"), testUser)
	_, q := res.location(t)
	if q.Get("error") != "invalid_request" {
		t.Fatalf("unpushed request of a PAR client: %v", q)
	}
	// Other clients are not concerned.
	if res := e.authorize(authParams("skip"), testUser); res.status != http.StatusFound {
		t.Fatalf("skip: %d", res.status)
	}
	// Pushed, the request shows the consent page, whose submission (a
	// POST without request_uri) gets the code.
	res = e.post(PARPath, url.Values{"response_type": {"code"}, "scope": {"read"}, "state": {"st"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}}, "conf", confSecret)
	if res.status != http.StatusCreated {
		t.Fatalf("PAR: %d %s", res.status, res.body)
	}
	res = e.authorize(url.Values{"client_id": {"conf"}, "request_uri": {res.json(t)["request_uri"].(string)}}, testUser)
	if res.status != http.StatusOK {
		t.Fatalf("consent page of a pushed request: %d %s", res.status, res.body)
	}
	form := hiddenFields(res.body)
	form.Set("decision", "approve")
	res = e.consent(form, testUser)
	if _, q := res.location(t); q.Get("code") == "" || q.Get("state") != "st" {
		t.Fatalf("consent of a pushed request: %d %v", res.status, q)
	}
}

func TestAssertionRefusals(t *testing.T) {
	e, kc := parEnv(t)
	cc := func(f url.Values) result {
		f.Set("grant_type", "client_credentials")
		return e.post(TokenPath, f)
	}
	// Accepted once, then the same assertion is a replay.
	f := e.assertionForm(kc, nil)
	raw := f.Get("client_assertion")
	if res := cc(f); res.status != http.StatusOK {
		t.Fatalf("first use: %d %s", res.status, res.body)
	}
	if res := cc(url.Values{"client_assertion_type": {assertionTypeJWTBearer}, "client_assertion": {raw}}); res.status != 401 ||
		!strings.Contains(res.body, "used before") {
		t.Fatalf("replay: %d %s", res.status, res.body)
	}
	other := newKeyClient(t, "kj")
	now := e.clock.Now()
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(strings.Repeat("k", 32))}, nil)
	hsJWS, _ := hs.Sign([]byte(`{"iss":"kj","sub":"kj","aud":"` + e.ts.URL + `","exp":` + jsonInt(now.Add(time.Minute).Unix()) + `,"jti":"h1"}`))
	hsRaw, _ := hsJWS.CompactSerialize()
	noneRaw := b64json(`{"alg":"none","typ":"JWT"}`) + "." + b64json(`{"iss":"kj","sub":"kj","aud":"`+e.ts.URL+`","exp":`+jsonInt(now.Add(time.Minute).Unix())+`,"jti":"n1"}`) + "."
	for name, a := range map[string]string{
		"wrong aud":     kc.assertion(t, "https://elsewhere.example", now, nil),
		"wrong iss":     kc.assertion(t, e.ts.URL, now, map[string]any{"iss": "conf"}),
		"no exp":        kc.assertion(t, e.ts.URL, now, map[string]any{"exp": nil}),
		"far exp":       kc.assertion(t, e.ts.URL, now, map[string]any{"exp": now.Add(time.Hour).Unix()}),
		"expired":       kc.assertion(t, e.ts.URL, now, map[string]any{"exp": now.Add(-time.Hour).Unix()}),
		"no jti":        kc.assertion(t, e.ts.URL, now, map[string]any{"jti": nil}),
		"other key":     other.assertion(t, e.ts.URL, now, nil),
		"alg none":      noneRaw,
		"HS256":         hsRaw,
		"unknown sub":   kc.assertion(t, e.ts.URL, now, map[string]any{"sub": "nobody", "iss": "nobody"}),
		"secret client": kc.assertion(t, e.ts.URL, now, map[string]any{"sub": "conf", "iss": "conf"}),
	} {
		res := cc(url.Values{"client_assertion_type": {assertionTypeJWTBearer}, "client_assertion": {a}})
		if res.status != http.StatusUnauthorized || res.json(t)["error"] != "invalid_client" {
			t.Errorf("%s: %d %s", name, res.status, res.body)
		}
	}
	// The token endpoint URL is an accepted aud too, and so is the PAR one.
	for _, aud := range []string{e.ts.URL + TokenPath, e.ts.URL + PARPath} {
		res := cc(url.Values{"client_assertion_type": {assertionTypeJWTBearer}, "client_assertion": {kc.assertion(t, aud, now, nil)}})
		if res.status != http.StatusOK {
			t.Errorf("aud %s: %d %s", aud, res.status, res.body)
		}
	}
	// A private_key_jwt client cannot use a secret or go without one.
	if res := e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {"kj"}}); res.status != 401 {
		t.Errorf("bare client_id: %d", res.status)
	}
}

func TestProfileFAPI2(t *testing.T) {
	kc := newKeyClient(t, "kj")
	clk := newClock()
	base := func(c *Config) {
		c.SingleUse = newFakeOnce(clk.Now)
		c.Profile = ProfileFAPI2
		c.DPoP = &dpop.Verifier{Replay: dpop.NewReplayCache(1000, 4)}
		c.Clients = map[string]*Client{"kj": {JWKS: kc.jwks(t), RedirectURIs: []string{"https://kj.example/cb"}}}
	}
	cfg := Config{Codes: newFakeStore(clk.Now), Tokens: newFakeStore(clk.Now), Hasher: newEnv(t).hasher}
	base(&cfg)
	cfg.Clients["bank"] = &Client{SecretHash: hash(t, "bank secret"), RedirectURIs: []string{"https://bank.example/cb"}}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), `client "bank"`) || !strings.Contains(err.Error(), "private_key_jwt") {
		t.Fatalf("fapi2 with a secret client: %v", err)
	}
	delete(cfg.Clients, "bank")
	noDPoP := cfg
	noDPoP.DPoP = nil
	if _, err := New(noDPoP); err == nil || !strings.Contains(err.Error(), "profile fapi2") || !strings.Contains(err.Error(), "DPoP") {
		t.Fatalf("fapi2 without DPoP: %v", err)
	}
	cfg.CodeLifetime = 10 * time.Minute
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "at most 1m0s") {
		t.Fatalf("fapi2 with a 10m code: %v", err)
	}
	e := newEnvClock(t, clk, base)
	res := e.do(mustGet(t, e.ts.URL+MetadataPath))
	m := res.json(t)
	if m["require_pushed_authorization_requests"] != true || m["pushed_authorization_request_endpoint"] != e.ts.URL+PARPath ||
		strings.Contains(res.body, "client_secret_basic") || !strings.Contains(res.body, "private_key_jwt") {
		t.Fatalf("metadata %s", res.body)
	}
	if e.srv.codeTTL != FAPI2MaxCodeLifetime {
		t.Fatalf("code lifetime %v", e.srv.codeTTL)
	}
	// PKCE is required of the confidential client.
	f := e.assertionForm(kc, nil, "response_type", "code")
	if res := e.post(PARPath, f); res.json(t)["error"] != "invalid_request" {
		t.Fatalf("PAR without PKCE: %d %s", res.status, res.body)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func b64json(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestAssertionJWKSURIAndOtherEndpoints(t *testing.T) {
	kc := newKeyClient(t, "kju")
	var fetches int
	var mu sync.Mutex
	jwks := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetches++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(kc.jwks(t))
	}))
	defer jwks.Close()
	tlsCfg := jwks.Client().Transport.(*http.Transport).TLSClientConfig
	e, _ := parEnv(t, func(c *Config) {
		c.KeyFetcher = fetch.New(fetch.Options{TLS: tlsCfg})
		c.Clients["kju"] = &Client{JWKSURI: jwks.URL + "/jwks", GrantTypes: []string{"client_credentials"}}
	})
	for _, path := range []string{TokenPath, IntrospectPath, RevokePath} {
		f := e.assertionForm(kc, nil, "grant_type", "client_credentials", "token", "cat_unknown")
		if res := e.post(path, f); res.status != http.StatusOK {
			t.Errorf("%s: %d %s", path, res.status, res.body)
		}
	}
	// An unknown kid refetches, at most once per 10s.
	kc.kid = "k2"
	if res := e.post(TokenPath, e.assertionForm(kc, nil, "grant_type", "client_credentials")); res.status != http.StatusUnauthorized {
		t.Errorf("new kid within 10s of the last fetch: %d %s", res.status, res.body)
	}
	e.clock.Advance(11 * time.Second)
	for range 3 {
		if res := e.post(TokenPath, e.assertionForm(kc, nil, "grant_type", "client_credentials")); res.status != http.StatusOK {
			t.Errorf("new kid: %d %s", res.status, res.body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fetches != 2 {
		t.Errorf("%d fetches, want 2", fetches)
	}
}

// dpopProof is a DPoP proof (RFC 9449 §4.2) of key for a POST to u.
func dpopProof(t *testing.T, key *ecdsa.PrivateKey, u string, now time.Time) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).
		WithType("dpop+jwt").WithHeader("jwk", jose.JSONWebKey{Key: &key.PublicKey}))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"jti": randomJTI(), "htm": "POST", "htu": u, "iat": now.Unix()})
	jws, err := signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func TestPARBindsTheCodeToTheDPoPKey(t *testing.T) {
	var e *env
	e, kc := parEnv(t, func(c *Config) {
		c.DPoP = &dpop.Verifier{Replay: dpop.NewReplayCache(1000, 4), Now: func() time.Time { return e.clock.Now() }}
	})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	verifier, challenge := pkce()
	push := func(proof string) result {
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+PARPath, strings.NewReader(e.assertionForm(kc, nil, "response_type", "code",
			"code_challenge", challenge, "code_challenge_method", "S256").Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("DPoP", proof)
		return e.do(req)
	}
	if res := push(dpopProof(t, key, e.ts.URL+TokenPath, e.clock.Now())); res.status != 400 || res.json(t)["error"] != "invalid_dpop_proof" {
		t.Fatalf("a proof for the token endpoint at PAR: %d %s", res.status, res.body)
	}
	res := push(dpopProof(t, key, e.ts.URL+PARPath, e.clock.Now()))
	if res.status != http.StatusCreated {
		t.Fatalf("PAR with DPoP: %d %s", res.status, res.body)
	}
	uri := res.json(t)["request_uri"].(string)
	res = e.authorize(url.Values{"client_id": {"kj"}, "request_uri": {uri}}, testUser)
	_, q := res.location(t)
	redeem := func(k *ecdsa.PrivateKey) result {
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+TokenPath, strings.NewReader(e.assertionForm(kc, nil, "grant_type", "authorization_code",
			"code", q.Get("code"), "code_verifier", verifier).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("DPoP", dpopProof(t, k, e.ts.URL+TokenPath, e.clock.Now()))
		return e.do(req)
	}
	if res := redeem(other); res.status != 400 || res.json(t)["error"] != "invalid_grant" && res.json(t)["error"] != "invalid_dpop_proof" {
		t.Fatalf("the code redeemed with another key: %d %s", res.status, res.body)
	}
	// Pushed again, the code redeems with the proof's key, bound.
	res = push(dpopProof(t, key, e.ts.URL+PARPath, e.clock.Now()))
	res = e.authorize(url.Values{"client_id": {"kj"}, "request_uri": {res.json(t)["request_uri"].(string)}}, testUser)
	_, q = res.location(t)
	if res := redeem(key); res.status != 200 || res.json(t)["token_type"] != "DPoP" {
		t.Fatalf("the code redeemed with the proof's key: %d %s", res.status, res.body)
	}
}

// A client that registers itself with private_key_jwt and a jwks gets no
// secret and authenticates with its key.
func TestRegisterPrivateKeyJWT(t *testing.T) {
	clk := newClock()
	var g *Registry
	reg := &Registration{Open: true, Scopes: []string{"read"}, GrantTypes: []string{"client_credentials", "authorization_code"}}
	kc := newKeyClient(t, "")
	e := newEnvClock(t, clk, withRegistry(t, &g, clk, reg), func(c *Config) { c.SingleUse = newFakeOnce(clk.Now) })
	register := func(body string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+RegisterPath, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res := e.do(req)
		var v map[string]any
		_ = json.Unmarshal([]byte(res.body), &v)
		return res.status, v
	}
	status, v := register(`{"token_endpoint_auth_method":"private_key_jwt","grant_types":["client_credentials"],"jwks":` + string(kc.jwks(t)) + `}`)
	if status != 201 || v["client_secret"] != nil || v["token_endpoint_auth_method"] != "private_key_jwt" {
		t.Fatalf("register: %d %v", status, v)
	}
	kc.id = v["client_id"].(string)
	if res := e.post(TokenPath, e.assertionForm(kc, nil, "grant_type", "client_credentials")); res.status != 200 {
		t.Fatalf("registered private_key_jwt client: %d %s", res.status, res.body)
	}
	if status, v := register(`{"token_endpoint_auth_method":"private_key_jwt","grant_types":["client_credentials"]}`); status != 400 {
		t.Errorf("private_key_jwt without keys: %d %v", status, v)
	}
	if status, v := register(`{"token_endpoint_auth_method":"private_key_jwt","grant_types":["client_credentials"],"jwks_uri":"http://10.0.0.1/jwks"}`); status != 400 {
		t.Errorf("http jwks_uri: %d %v", status, v)
	}
}

// failingOnce is a SingleUse whose backend is down.
type failingOnce struct{}

func (failingOnce) PutOnce(context.Context, string, []byte, time.Time) error {
	return stores.Unavailable(context.DeadlineExceeded)
}
func (failingOnce) TakeOnce(context.Context, string) ([]byte, error) {
	return nil, stores.Unavailable(context.DeadlineExceeded)
}
func (failingOnce) PurgeExpiredOnce(context.Context, int) (int64, error) { return 0, nil }

// A store outage is 503 at PAR, at the authorization endpoint and for an
// assertion, never a pass.
func TestSingleUseOutage(t *testing.T) {
	e, kc := parEnv(t, func(c *Config) { c.SingleUse = failingOnce{} })
	if res := e.post(PARPath, url.Values{"response_type": {"code"}}, "conf", confSecret); res.status != 503 || res.json(t)["error"] != "temporarily_unavailable" {
		t.Errorf("PAR: %d %s", res.status, res.body)
	}
	if res := e.authorize(url.Values{"client_id": {"conf"}, "request_uri": {RequestURIPrefix + "par_2" + strings.Repeat("a", 43)}}, testUser); res.status != 503 {
		t.Errorf("authorize: %d", res.status)
	}
	if res := e.post(TokenPath, e.assertionForm(kc, nil, "grant_type", "client_credentials")); res.status != 503 {
		t.Errorf("assertion: %d %s", res.status, res.body)
	}
}

// Clients that register themselves can ask for DPoP-bound access tokens
// (RFC 9449 §5.2) and an ID token algorithm (OpenID Connect Registration
// §2); a wrongly typed member or an algorithm without a key is refused.
func TestRegisterDPoPAndIDTokenAlg(t *testing.T) {
	clk := newClock()
	var g *Registry
	reg := &Registration{Open: true, Scopes: []string{"read", "openid"}, GrantTypes: []string{"client_credentials", "authorization_code"}}
	e := newEnvClock(t, clk, withRegistry(t, &g, clk, reg), withOIDC(t, nil), func(c *Config) {
		c.DPoP = &dpop.Verifier{Replay: dpop.NewReplayCache(1000, 1)}
	})
	register := func(body string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+RegisterPath, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res := e.do(req)
		var v map[string]any
		_ = json.Unmarshal([]byte(res.body), &v)
		return res.status, v
	}
	status, v := register(`{"grant_types":["client_credentials"],"scope":"read","dpop_bound_access_tokens":true}`)
	if status != 201 || v["dpop_bound_access_tokens"] != true {
		t.Fatalf("register: %d %v", status, v)
	}
	id, secret := v["client_id"].(string), v["client_secret"].(string)
	post := func(proof string) result {
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+TokenPath, strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		return e.do(req)
	}
	wantError(t, post(""), 400, "invalid_dpop_proof")
	if res := post(newTestKey(t).proof(t, e.ts.URL+TokenPath, "")); res.status != 200 || res.json(t)["token_type"] != "DPoP" {
		t.Errorf("with a proof: %d %s", res.status, res.body)
	}
	for body, field := range map[string]string{
		`{"grant_types":["client_credentials"],"scope":"read","dpop_bound_access_tokens":"yes"}`:       "dpop_bound_access_tokens",
		`{"grant_types":["client_credentials"],"scope":"read","id_token_signed_response_alg":"EdDSA"}`: "id_token_signed_response_alg",
		`{"grant_types":["client_credentials"],"scope":"read","id_token_signed_response_alg":7}`:       "id_token_signed_response_alg",
	} {
		if status, v := register(body); status != 400 || v["error"] != "invalid_client_metadata" || !strings.Contains(fmt.Sprint(v["error_description"]), field) {
			t.Errorf("%s: %d %v", body, status, v)
		}
	}
	if status, v := register(`{"grant_types":["client_credentials"],"scope":"read","id_token_signed_response_alg":"ES256"}`); status != 201 {
		t.Errorf("ES256: %d %v", status, v)
	}
}
