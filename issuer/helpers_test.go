package issuer

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// Test client secrets. confSecret needs the form-urlencoding of RFC 6749
// §2.3.1 in a Basic header.
const (
	confSecret  = "s3cr:et/+&=% é"
	multiSecret = "multi-secret"
	svcSecret   = "svc-secret"
	skipSecret  = "skip-secret"
	nrSecret    = "nr-secret"
	ccrSecret   = "ccr-secret"
	rsSecret    = "rs-secret"
	testUser    = "alice"
)

// Redirect URIs of the test clients.
const (
	confRedirect = "https://app.example/cb"
	pubRedirect  = "https://spa.example/cb"
	skipRedirect = "https://skip.example/cb?x=1"
	nrRedirect   = "https://nr.example/cb"
)

var (
	hashMu sync.Mutex
	hashes = map[string][]byte{}
)

// hash returns a cached bcrypt hash of secret at the lowest cost.
func hash(t testing.TB, secret string) []byte {
	hashMu.Lock()
	defer hashMu.Unlock()
	if h, ok := hashes[secret]; ok {
		return h
	}
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hashes[secret] = h
	return h
}

func testClients(t testing.TB) map[string]*Client {
	return map[string]*Client{
		"conf":  {SecretHash: hash(t, confSecret), RedirectURIs: []string{confRedirect}, Scopes: []string{"read", "write", "admin"}},
		"pub":   {RedirectURIs: []string{pubRedirect}, Scopes: []string{"read", "write"}},
		"multi": {SecretHash: hash(t, multiSecret), RedirectURIs: []string{"https://m.example/a", "https://m.example/b"}, Scopes: []string{"read"}},
		"svc":   {SecretHash: hash(t, svcSecret), GrantTypes: []string{"client_credentials"}, Scopes: []string{"svc.read", "svc.write"}},
		"skip":  {SecretHash: hash(t, skipSecret), RedirectURIs: []string{skipRedirect}, Scopes: []string{"read"}, SkipConsent: true},
		"norefresh": {SecretHash: hash(t, nrSecret), GrantTypes: []string{"authorization_code"},
			RedirectURIs: []string{nrRedirect}, Scopes: []string{"read"}, SkipConsent: true},
		"ccredir": {SecretHash: hash(t, ccrSecret), GrantTypes: []string{"client_credentials"},
			RedirectURIs: []string{"https://ccr.example/cb"}, Scopes: []string{"read"}},
		// A resource server: it only introspects.
		"rs": {SecretHash: hash(t, rsSecret), GrantTypes: []string{"client_credentials"}, Introspect: true},
	}
}

// secrets maps the confidential test clients to their secrets.
var secrets = map[string]string{
	"conf": confSecret, "multi": multiSecret, "svc": svcSecret, "skip": skipSecret,
	"norefresh": nrSecret, "ccredir": ccrSecret, "rs": rsSecret,
}

// env is a Server behind an httptest.Server, over a fake store.
type env struct {
	t      *testing.T
	srv    *Server
	store  *fakeStore
	clock  *clock
	hasher *token.Hasher
	ts     *httptest.Server
	client *http.Client
	logs   *observer.ObservedLogs
}

// newEnv starts a test server. The subject is the X-Test-User header.
func newEnv(t *testing.T, mods ...func(*Config)) *env {
	t.Helper()
	return newEnvClock(t, newClock(), mods...)
}

// newEnvClock is newEnv on the given clock; every path goes to
// Server.Endpoint.
func newEnvClock(t *testing.T, clk *clock, mods ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, clock: clk, hasher: token.NewHasher([]byte("test hmac secret"))}
	e.store = newFakeStore(e.clock.Now)
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	cfg := Config{
		Clients: testClients(t),
		Codes:   e.store,
		Tokens:  e.store,
		Hasher:  e.hasher,
		Subject: func(r *http.Request) string { return r.Header.Get("X-Test-User") },
		Logger:  zap.New(core),
		Now:     e.clock.Now,
	}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := srv.Endpoint(r.URL.Path); h != nil {
			h.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(e.ts.Close)
	e.client = e.ts.Client()
	e.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	t.Cleanup(func() { e.checkLogs() })
	return e
}

// checkLogs fails the test if a raw code, token or secret reached the log.
func (e *env) checkLogs() {
	for _, entry := range e.logs.All() {
		text := entry.Message
		for k, v := range entry.ContextMap() {
			text += " " + k + "=" + strings.ReplaceAll(strings.ReplaceAll(toString(v), "\n", " "), "\t", " ")
		}
		for _, bad := range []string{token.CodePrefix, token.AccessPrefix, token.RefreshPrefix, confSecret, svcSecret, multiSecret} {
			if strings.Contains(text, bad) {
				e.t.Errorf("log entry leaks a secret (%q): %s", bad, text)
			}
		}
	}
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// result is a read response.
type result struct {
	status int
	header http.Header
	body   string
}

// json decodes the body as a JSON object.
func (r result) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	return m
}

// location returns the redirect's URL and query.
func (r result) location(t *testing.T) (*url.URL, url.Values) {
	t.Helper()
	loc := r.header.Get("Location")
	if loc == "" {
		t.Fatalf("no Location (status %d, body %.300s)", r.status, r.body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u, u.Query()
}

func (e *env) do(req *http.Request) result {
	e.t.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header, string(b)}
}

// authorize sends a GET authorization request as user ("" for none).
func (e *env) authorize(params url.Values, user string) result {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.ts.URL+AuthorizePath+"?"+params.Encode(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	return e.do(req)
}

// consent posts the consent form as user.
func (e *env) consent(form url.Values, user string) result {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+AuthorizePath, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	return e.do(req)
}

// post sends form to path, with Basic credentials when basic is {id, secret}.
func (e *env) post(path string, form url.Values, basic ...string) result {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	return e.do(req)
}

// postAs posts form authenticated as client: Basic for confidential
// clients, client_id in the body for public ones.
func (e *env) postAs(path, clientID string, form url.Values) result {
	e.t.Helper()
	if secret, ok := secrets[clientID]; ok {
		return e.post(path, form, clientID, secret)
	}
	f := url.Values{"client_id": {clientID}}
	for k, v := range form {
		f[k] = v
	}
	return e.post(path, f)
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)

// hiddenFields returns the consent form's hidden fields.
func hiddenFields(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(body, -1) {
		v.Add(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return v
}

// pkce returns a verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	v := oauth2.GenerateVerifier()
	return v, oauth2.S256ChallengeFromVerifier(v)
}

// authParams builds an authorization request.
func authParams(clientID string, kv ...string) url.Values {
	v := url.Values{"response_type": {"code"}, "client_id": {clientID}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// code runs the authorization request and approves consent if asked; it
// returns the code from the redirect.
func (e *env) code(params url.Values) string {
	e.t.Helper()
	res := e.authorize(params, testUser)
	if res.status == http.StatusOK {
		form := hiddenFields(res.body)
		form.Set("decision", "approve")
		res = e.consent(form, testUser)
	}
	if res.status != http.StatusFound && res.status != http.StatusSeeOther {
		e.t.Fatalf("authorize: status %d, body %.500s", res.status, res.body)
	}
	_, q := res.location(e.t)
	c := q.Get("code")
	if c == "" {
		e.t.Fatalf("no code in redirect: %v", q)
	}
	return c
}

// tokens runs the authorization code flow with PKCE for clientID and
// redeems the code; it returns the token response.
func (e *env) tokens(clientID string, kv ...string) map[string]any {
	e.t.Helper()
	verifier, challenge := pkce()
	params := authParams(clientID, append([]string{"code_challenge", challenge, "code_challenge_method", "S256"}, kv...)...)
	c := e.code(params)
	res := e.postAs(TokenPath, clientID, url.Values{"grant_type": {"authorization_code"}, "code": {c}, "code_verifier": {verifier},
		"redirect_uri": {params.Get("redirect_uri")}})
	if res.status != http.StatusOK {
		e.t.Fatalf("token: status %d, body %s", res.status, res.body)
	}
	return res.json(e.t)
}

// introspect returns the introspection response for tok, asked by a client
// allowed to see it (RFC 7662 §4): an access token by the resource server
// rs, a refresh token by its own client. A refresh token of a public
// client, which cannot introspect, is answered from the store.
func (e *env) introspect(tok string) map[string]any {
	e.t.Helper()
	asker := "rs"
	if token.WellFormed(token.RefreshPrefix, tok) {
		t, err := e.store.LookupToken(context.Background(), stores.RefreshToken, e.hasher.Key(tok))
		if err != nil {
			return map[string]any{"active": false}
		}
		if _, ok := secrets[t.ClientID]; !ok {
			return map[string]any{"active": true, "client_id": t.ClientID, "scope": t.Scope}
		}
		asker = t.ClientID
	}
	res := e.post(IntrospectPath, url.Values{"token": {tok}}, asker, secrets[asker])
	if res.status != http.StatusOK {
		e.t.Fatalf("introspect: status %d, body %s", res.status, res.body)
	}
	return res.json(e.t)
}

func (e *env) active(tok string) bool {
	e.t.Helper()
	return e.introspect(tok)["active"] == true
}

// wantError checks a JSON error response.
func wantError(t *testing.T, res result, status int, code string) {
	t.Helper()
	if res.status != status {
		t.Errorf("status = %d, want %d (body %s)", res.status, status, res.body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(res.body), &m); err != nil {
		t.Errorf("error body %q is not JSON", res.body)
		return
	}
	if m["error"] != code {
		t.Errorf("error = %v, want %s (body %s)", m["error"], code, res.body)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	if p := res.header.Get("Pragma"); p != "no-cache" {
		t.Errorf("Pragma = %q, want no-cache", p)
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	if status == http.StatusUnauthorized && res.header.Get("WWW-Authenticate") != `Basic realm="oauth2"` {
		t.Errorf("WWW-Authenticate = %q", res.header.Get("WWW-Authenticate"))
	}
}

// wantRedirectError checks an error redirect to the client.
func wantRedirectError(t *testing.T, res result, redirect, code, state string) {
	t.Helper()
	if res.status != http.StatusFound && res.status != http.StatusSeeOther {
		t.Fatalf("status = %d, want a redirect (body %.300s)", res.status, res.body)
	}
	u, q := res.location(t)
	base := *u
	base.RawQuery = ""
	if want, _ := url.Parse(redirect); base.String() != (&url.URL{Scheme: want.Scheme, Host: want.Host, Path: want.Path}).String() {
		t.Errorf("redirected to %s, want %s", u, redirect)
	}
	if q.Get("error") != code {
		t.Errorf("error = %q, want %q (%s)", q.Get("error"), code, u)
	}
	if q.Get("error_description") == "" {
		t.Errorf("no error_description")
	}
	if q.Get("state") != state {
		t.Errorf("state = %q, want %q", q.Get("state"), state)
	}
	if q.Get("iss") == "" {
		t.Errorf("no iss")
	}
	if q.Get("code") != "" {
		t.Errorf("error redirect carries a code")
	}
}

// wantPage checks an HTML page response that must not redirect.
func wantPage(t *testing.T, res result, status int) {
	t.Helper()
	if res.status != status {
		t.Errorf("status = %d, want %d (body %.300s)", res.status, status, res.body)
	}
	if loc := res.header.Get("Location"); loc != "" {
		t.Errorf("unexpected redirect to %s", loc)
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q, want text/html", ct)
	}
	wantPageHeaders(t, res)
}

func wantPageHeaders(t *testing.T, res result) {
	t.Helper()
	for k, want := range map[string]string{
		"Cache-Control":   "no-store",
		"X-Frame-Options": "DENY",
	} {
		if got := res.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if csp := res.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
}
