package oauth2

// End-to-end tests through a real Caddy (caddytest runs one in this process,
// admin on localhost:2999) with a real upstream behind reverse_proxy, and
// golang.org/x/oauth2 as the client.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const (
	authBase = "http://localhost:9080"
	apiBase  = "http://localhost:9081"
	// secretHash is bcrypt("s3cret", cost 10).
	secretHash = "$2a$10$89V/vmaRKvoFAwi2nJBI9eQFrG7YqO/JOfx3ulf3ZlmKGofiPS5zW"
	// aliceHash is bcrypt("alice-password", cost 10).
	aliceHash = "$2a$10$GoIsAKIkvvRWVVKKsPufvOQu0pTQmiDhSINDV/dCO9ES6DQ1smcFS"
)

// upstream records what the guard let through.
type upstream struct {
	*httptest.Server
	seen chan http.Header
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{seen: make(chan http.Header, 100)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case u.seen <- r.Header.Clone():
		default:
		}
		fmt.Fprintf(w, "upstream saw user=%s", r.Header.Get("X-User"))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) last(t *testing.T) http.Header {
	t.Helper()
	select {
	case h := <-u.seen:
		return h
	case <-time.After(5 * time.Second):
		t.Fatal("upstream saw no request")
		return nil
	}
}

// testConfig returns a test configuration; extra goes into the oauth2 block.
func testConfig(upstreamAddr, extra, siteExtra string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	default_bind 127.0.0.1
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	oauth2 {
		purge_every 1s
		%s
		client svc {
			secret_hash %s
			redirect_uri http://127.0.0.1:9999/cb
			grant_types authorization_code refresh_token client_credentials
			scopes read write
		}
		client app {
			redirect_uri http://127.0.0.1:9999/cb
			scopes read write
			skip_consent
		}
	}
}
http://localhost:9080 {
	handle /oauth2/authorize {
		basic_auth {
			alice %s
		}
		oauth2_server
	}
	oauth2_server
}
http://localhost:9081 {
	oauth2_guard read
	reverse_proxy %s {
		header_up X-User {http.auth.user.id}
		header_up X-Client {oauth2.client_id}
		header_up X-Scope {oauth2.scope}
	}
	%s
}
http://localhost:9081/admin {
	oauth2_guard write
	reverse_proxy %s
}
`, extra, secretHash, aliceHash, upstreamAddr, siteExtra, upstreamAddr)
}

func startCaddy(t *testing.T, config string) *caddytest.Tester {
	t.Helper()
	tester := caddytest.NewTester(t)
	tester.InitServer(config, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	return tester
}

func ccConfig(scopes ...string) *clientcredentials.Config {
	return &clientcredentials.Config{
		ClientID:     "svc",
		ClientSecret: "s3cret",
		TokenURL:     authBase + "/oauth2/token",
		Scopes:       scopes,
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
}

func get(t *testing.T, client *http.Client, url, bearer string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func postForm(t *testing.T, endpoint string, form url.Values, user, pass string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, authBase+endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp, body
}

// authorize runs the browser leg of the authorization code flow as alice and
// returns the code from the redirect.
func authorize(t *testing.T, cfg *oauth2.Config, opts ...oauth2.AuthCodeOption) string {
	t.Helper()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, cfg.AuthCodeURL("xyz-state", opts...), nil)
	req.SetBasicAuth("alice", "alice-password")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		// The consent page: approve it with the form as served.
		resp = submitConsent(t, noRedirect, string(body), true)
	}
	if resp.StatusCode/100 != 3 {
		t.Fatalf("authorize answered %d, want a redirect: %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Query().Get("state"); got != "xyz-state" {
		t.Fatalf("redirect %s lost the state", loc)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("redirect %s carries no code", loc)
	}
	return code
}

var (
	inputRE  = regexp.MustCompile(`<input[^>]*>`)
	nameRE   = regexp.MustCompile(`name="([^"]*)"`)
	valueRE  = regexp.MustCompile(`value="([^"]*)"`)
	buttonRE = regexp.MustCompile(`<button[^>]*name="([^"]*)"[^>]*value="([^"]*)"`)
)

// submitConsent posts the consent form found in page, approving or denying.
func submitConsent(t *testing.T, client *http.Client, page string, approve bool) *http.Response {
	t.Helper()
	form := url.Values{}
	for _, in := range inputRE.FindAllString(page, -1) {
		n, v := nameRE.FindStringSubmatch(in), valueRE.FindStringSubmatch(in)
		if n != nil && v != nil && strings.Contains(in, `type="hidden"`) {
			form.Set(n[1], htmlUnescape(v[1]))
		}
	}
	if len(form) == 0 {
		t.Fatalf("no consent form in page:\n%s", page)
	}
	for _, b := range buttonRE.FindAllStringSubmatch(page, -1) {
		isApprove := b[2] == "allow" || b[2] == "approve" || b[2] == "yes"
		if isApprove == approve {
			form.Set(b[1], b[2])
		}
	}
	req, _ := http.NewRequest(http.MethodPost, authBase+"/oauth2/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("alice", "alice-password")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func htmlUnescape(s string) string {
	r := strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">", "&quot;", `"`)
	return r.Replace(s)
}

func retrieveErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

func TestEndToEnd(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, testConfig(up.Listener.Addr().String(), "", ""))
	ctx := context.Background()

	t.Run("ClientCredentials", func(t *testing.T) {
		tok, err := ccConfig("read").Token(ctx)
		if err != nil {
			t.Fatalf("client_credentials: %v", err)
		}
		if !strings.HasPrefix(tok.AccessToken, "cat_") || tok.RefreshToken != "" || tok.TokenType != "Bearer" {
			t.Fatalf("token = %+v", tok)
		}
		resp, body := get(t, ccConfig("read").Client(ctx), apiBase+"/things", "")
		if resp.StatusCode != 200 || body != "upstream saw user=svc" {
			t.Fatalf("API answered %d %q", resp.StatusCode, body)
		}
		h := up.last(t)
		if h.Get("Authorization") != "" {
			t.Fatal("the bearer token reached the upstream")
		}
		if h.Get("X-Client") != "svc" || h.Get("X-Scope") != "read" {
			t.Fatalf("placeholders upstream: client %q scope %q", h.Get("X-Client"), h.Get("X-Scope"))
		}
	})

	t.Run("GuardChallenges", func(t *testing.T) {
		resp, _ := get(t, nil, apiBase+"/things", "")
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="api"` {
			t.Fatalf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		resp, _ = get(t, nil, apiBase+"/things", "cat_"+strings.Repeat("x", 43))
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("unknown token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		tok, err := ccConfig("read").Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		resp, _ = get(t, nil, apiBase+"/admin", tok.AccessToken)
		if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope", scope="write"`) {
			t.Fatalf("insufficient scope: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})

	t.Run("TokenEndpointErrors", func(t *testing.T) {
		resp, body := postForm(t, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "svc", "wrong")
		if resp.StatusCode != 401 || body["error"] != "invalid_client" || resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("wrong secret: %d %v", resp.StatusCode, body)
		}
		resp, body = postForm(t, "/oauth2/token", url.Values{"grant_type": {"password"}}, "svc", "s3cret")
		if resp.StatusCode != 400 || body["error"] != "unsupported_grant_type" {
			t.Fatalf("unknown grant: %d %v", resp.StatusCode, body)
		}
		resp, body = postForm(t, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, "svc", "s3cret")
		if resp.StatusCode != 400 || body["error"] != "invalid_scope" {
			t.Fatalf("unknown scope: %d %v", resp.StatusCode, body)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("Cache-Control = %q", resp.Header.Get("Cache-Control"))
		}
		resp, _ = get(t, nil, authBase+"/oauth2/token", "")
		if resp.StatusCode != 405 {
			t.Fatalf("GET on the token endpoint: %d", resp.StatusCode)
		}
	})

	t.Run("AuthorizationCodePKCEAndRefreshRotation", func(t *testing.T) {
		cfg := &oauth2.Config{
			ClientID:    "app",
			Endpoint:    oauth2.Endpoint{AuthURL: authBase + "/oauth2/authorize", TokenURL: authBase + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
			RedirectURL: "http://127.0.0.1:9999/cb",
			Scopes:      []string{"read"},
		}
		verifier := oauth2.GenerateVerifier()
		code := authorize(t, cfg, oauth2.S256ChallengeOption(verifier))
		tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		if tok.RefreshToken == "" {
			t.Fatal("no refresh token")
		}
		resp, body := get(t, nil, apiBase+"/me", tok.AccessToken)
		if resp.StatusCode != 200 || body != "upstream saw user=alice" {
			t.Fatalf("API answered %d %q", resp.StatusCode, body)
		}
		up.last(t)

		// The code is single use: a replay fails and revokes what it issued.
		_, err = cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if retrieveErrorCode(err) != "invalid_grant" {
			t.Fatalf("code replay: %v", err)
		}
		if resp, _ := get(t, nil, apiBase+"/me", tok.AccessToken); resp.StatusCode != 401 {
			t.Fatalf("token issued from a replayed code still passes: %d", resp.StatusCode)
		}

		// A fresh grant, then refresh rotation through the library.
		verifier = oauth2.GenerateVerifier()
		code = authorize(t, cfg, oauth2.S256ChallengeOption(verifier))
		tok, err = cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		stale := *tok
		stale.Expiry = time.Now().Add(-time.Minute)
		fresh, err := cfg.TokenSource(ctx, &stale).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if fresh.RefreshToken == "" || fresh.RefreshToken == tok.RefreshToken || fresh.AccessToken == tok.AccessToken {
			t.Fatal("refresh did not rotate the tokens")
		}
		if resp, _ := get(t, nil, apiBase+"/me", fresh.AccessToken); resp.StatusCode != 200 {
			t.Fatalf("refreshed token: %d", resp.StatusCode)
		}
		up.last(t)
		// Replaying the rotated refresh token revokes the whole family.
		_, err = cfg.TokenSource(ctx, &stale).Token()
		if retrieveErrorCode(err) != "invalid_grant" {
			t.Fatalf("refresh replay: %v", err)
		}
		if resp, _ := get(t, nil, apiBase+"/me", fresh.AccessToken); resp.StatusCode != 401 {
			t.Fatalf("family survived a refresh replay: %d", resp.StatusCode)
		}
		fresh.Expiry = time.Now().Add(-time.Minute)
		if _, err := cfg.TokenSource(ctx, fresh).Token(); retrieveErrorCode(err) != "invalid_grant" {
			t.Fatalf("new refresh token survived a replay of its predecessor: %v", err)
		}
	})

	t.Run("ConsentForConfidentialClient", func(t *testing.T) {
		cfg := &oauth2.Config{
			ClientID:     "svc",
			ClientSecret: "s3cret",
			Endpoint:     oauth2.Endpoint{AuthURL: authBase + "/oauth2/authorize", TokenURL: authBase + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader},
			RedirectURL:  "http://127.0.0.1:9999/cb",
			Scopes:       []string{"read", "write"},
		}
		code := authorize(t, cfg) // goes through the consent page
		tok, err := cfg.Exchange(ctx, code)
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		if resp, _ := get(t, nil, apiBase+"/admin", tok.AccessToken); resp.StatusCode != 200 {
			t.Fatalf("API answered %d", resp.StatusCode)
		}
		up.last(t)

		// Denial redirects with access_denied.
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest(http.MethodGet, cfg.AuthCodeURL("s2"), nil)
		req.SetBasicAuth("alice", "alice-password")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp = submitConsent(t, noRedirect, string(page), false)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode/100 != 3 || loc.Query().Get("error") != "access_denied" || loc.Query().Get("code") != "" {
			t.Fatalf("denial: %d %s", resp.StatusCode, loc)
		}
	})

	t.Run("AuthorizeWithoutUserIssuesNoCode", func(t *testing.T) {
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, _ := get(t, noRedirect, authBase+"/oauth2/authorize?response_type=code&client_id=app&redirect_uri=http%3A%2F%2F127.0.0.1%3A9999%2Fcb", "")
		if resp.StatusCode != 401 || strings.Contains(resp.Header.Get("Location"), "code=") {
			t.Fatalf("unauthenticated authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("RevocationAndIntrospection", func(t *testing.T) {
		tok, err := ccConfig("read").Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		resp, body := postForm(t, "/oauth2/introspect", url.Values{"token": {tok.AccessToken}}, "svc", "s3cret")
		if resp.StatusCode != 200 || body["active"] != true || body["client_id"] != "svc" || body["scope"] != "read" {
			t.Fatalf("introspect: %d %v", resp.StatusCode, body)
		}
		resp, _ = postForm(t, "/oauth2/revoke", url.Values{"token": {tok.AccessToken}, "token_type_hint": {"access_token"}}, "svc", "s3cret")
		if resp.StatusCode != 200 {
			t.Fatalf("revoke: %d", resp.StatusCode)
		}
		if resp, _ := get(t, nil, apiBase+"/things", tok.AccessToken); resp.StatusCode != 401 {
			t.Fatalf("revoked token passes the guard: %d", resp.StatusCode)
		}
		resp, body = postForm(t, "/oauth2/introspect", url.Values{"token": {tok.AccessToken}}, "svc", "s3cret")
		if resp.StatusCode != 200 || body["active"] != false || len(body) != 1 {
			t.Fatalf("introspect of a revoked token: %d %v", resp.StatusCode, body)
		}
	})

	t.Run("Metadata", func(t *testing.T) {
		resp, body := get(t, nil, authBase+"/.well-known/oauth-authorization-server", "")
		var md map[string]any
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &md) != nil {
			t.Fatalf("metadata: %d %s", resp.StatusCode, body)
		}
		if md["issuer"] != authBase || md["token_endpoint"] != authBase+"/oauth2/token" {
			t.Fatalf("metadata: %v", md)
		}
	})
}

// TestReload checks that tokens survive `caddy reload` and that reloads leave
// no goroutine of this plugin behind: exactly one purger runs afterwards, as
// before. (Goroutines of pooled upstream connections belong to Caddy's
// reverse proxy and come and go with keep-alive, so they are not counted.)
func TestReload(t *testing.T) {
	up := newUpstream(t)
	tester := startCaddy(t, testConfig(up.Listener.Addr().String(), "", ""))
	ctx := context.Background()
	tok, err := ccConfig("read").Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := pluginGoroutines(); n["purge"] != 1 {
		t.Fatalf("after start: %v, want exactly one purger", n)
	}
	before := pluginGoroutines()
	for i := 1; i <= 10; i++ {
		tester.InitServer(testConfig(up.Listener.Addr().String(), "", fmt.Sprintf("header X-Reload %d", i)), "caddyfile")
		resp, _ := get(t, nil, apiBase+"/things", tok.AccessToken)
		if resp.StatusCode != 200 || resp.Header.Get("X-Reload") != fmt.Sprint(i) {
			t.Fatalf("after reload %d: %d (X-Reload %q)", i, resp.StatusCode, resp.Header.Get("X-Reload"))
		}
		up.last(t)
	}
	var after map[string]int
	for try := 0; try < 20; try++ {
		if after = pluginGoroutines(); fmt.Sprint(after) == fmt.Sprint(before) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	t.Fatalf("plugin goroutines went from %v to %v over 10 reloads:\n%s", before, after, buf[:n])
}

// pluginGoroutines counts live goroutines running code of this module or of
// bigcache, by package.
func pluginGoroutines() map[string]int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	counts := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "TestReload") {
			continue
		}
		for _, pkg := range []string{"caddy-oauth2/purge", "caddy-oauth2/stores", "caddy-oauth2/issuer", "caddy-oauth2/validator", "bigcache"} {
			if strings.Contains(g, pkg) {
				counts[pkg[strings.LastIndex(pkg, "/")+1:]]++
				break
			}
		}
	}
	return counts
}

// TestStoreOutage points both stores at a closed port: the token endpoint
// answers 503 temporarily_unavailable and the guard 503, never a pass.
func TestStoreOutage(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, testConfig(up.Listener.Addr().String(), `
		store_timeout 1s
		access_token_store sql {
			dialect mysql
			dsn "oauth2:oauth2@tcp(127.0.0.1:1)/nowhere"
		}
		authorization_code_store sql {
			dialect mysql
			dsn "oauth2:oauth2@tcp(127.0.0.1:1)/nowhere"
		}`, ""))
	resp, body := postForm(t, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "svc", "s3cret")
	if resp.StatusCode != 503 || body["error"] != "temporarily_unavailable" {
		t.Fatalf("token endpoint during an outage: %d %v", resp.StatusCode, body)
	}
	resp, _ = get(t, nil, apiBase+"/things", "cat_"+strings.Repeat("A", 43))
	if resp.StatusCode != 503 {
		t.Fatalf("guard during an outage: %d, want 503", resp.StatusCode)
	}
	select {
	case <-up.seen:
		t.Fatal("a request reached the upstream during the outage")
	default:
	}
}

// TestValidationCache runs the guard over SQLite with the validation cache:
// a revocation through this Caddy takes effect at once.
func TestValidationCache(t *testing.T) {
	up := newUpstream(t)
	db := t.TempDir() + "/oauth2.db"
	startCaddy(t, testConfig(up.Listener.Addr().String(), fmt.Sprintf(`
		validation_cache 30s
		access_token_store sql {
			dialect sqlite
			dsn %q
			create_schema
		}`, db), ""))
	tok, err := ccConfig("read").Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if resp, _ := get(t, nil, apiBase+"/things", tok.AccessToken); resp.StatusCode != 200 {
			t.Fatalf("guard: %d", resp.StatusCode)
		}
		up.last(t)
	}
	resp, _ := postForm(t, "/oauth2/revoke", url.Values{"token": {tok.AccessToken}}, "svc", "s3cret")
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if resp, _ := get(t, nil, apiBase+"/things", tok.AccessToken); resp.StatusCode != 401 {
		t.Fatalf("a token revoked on this node still passes the cached guard: %d", resp.StatusCode)
	}
}
