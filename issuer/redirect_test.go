package issuer

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/token"
)

// TestRedirectURIRegistration checks the registration rules of RFC 9700
// §2.1, §4.1 and RFC 8252 §7, §8.3: each bad URI is refused at
// configuration time with an error naming the client and the URI.
func TestRedirectURIRegistration(t *testing.T) {
	store := newFakeStore(time.Now)
	build := func(uri string) error {
		_, err := New(Config{
			Clients: map[string]*Client{"native": {RedirectURIs: []string{"https://ok.example/cb", uri}}},
			Codes:   store, Tokens: store, Hasher: token.NewHasher([]byte("k")),
		})
		return err
	}
	for _, uri := range []string{
		"javascript:alert(1)",
		"JavaScript://x/%0aalert(1)",
		"data:text/html,<script>alert(1)</script>",
		"file:///etc/passwd",
		"vbscript:msgbox(1)",
		"https://*.example.com/cb",
		"https://app.example/*",
		"https://user:pass@app.example/cb",
		"https://app.example@evil.example/cb",
		"https://app.example/cb#frag",
		"http://app.example/cb",
		"http://localhost/cb",
		"http://localhost:8080/cb",
		"http://127.0.0.2/cb",
		"http://127.0.0.1.evil.example/cb",
		"http://[::2]/cb",
		"http://127.0.0.1:0/cb",
		"http://127.0.0.1:99999/cb",
		"myapp:/cb", // a private-use scheme must be a reverse domain name
		"https:///cb",
		"/cb",
	} {
		err := build(uri)
		if err == nil {
			t.Errorf("redirect URI %q accepted", uri)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, `client "native"`) || !strings.Contains(msg, fmt.Sprintf("%q", uri)) {
			t.Errorf("error %q does not name the client and the URI %q", msg, uri)
		}
	}
	for _, uri := range []string{
		"https://app.example/cb",
		"https://app.example:8443/cb?x=1",
		"http://127.0.0.1/cb",
		"http://127.0.0.1:8080/cb",
		"http://[::1]/cb",
		"http://[::1]:8080/cb",
		"com.example.app:/oauth2redirect",
		"com.example.app://cb",
	} {
		if err := build(uri); err != nil {
			t.Errorf("redirect URI %q refused: %v", uri, err)
		}
	}
}

// TestLoopbackRedirectAnyPort checks RFC 8252 §7.3: a registered loopback
// redirect URI matches on any port, with scheme, host, path and query
// exact, and the token endpoint wants the exact URI used.
func TestLoopbackRedirectAnyPort(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients["native"] = &Client{RedirectURIs: []string{"http://127.0.0.1/cb", "http://[::1]:8080/cb?app=1"},
			Scopes: []string{"read"}, SkipConsent: true}
	})
	redeem := func(uri, redirectParam string) result {
		t.Helper()
		verifier, challenge := pkce()
		res := e.authorize(authParams("native", "redirect_uri", uri, "code_challenge", challenge, "code_challenge_method", "S256"), testUser)
		if res.status != http.StatusFound || !strings.HasPrefix(res.header.Get("Location"), uri+"?") && !strings.HasPrefix(res.header.Get("Location"), uri+"&") {
			t.Fatalf("%s: status %d, Location %q", uri, res.status, res.header.Get("Location"))
		}
		_, q := res.location(t)
		return e.postAs(TokenPath, "native", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
			"code_verifier": {verifier}, "redirect_uri": {redirectParam}})
	}
	for _, uri := range []string{"http://127.0.0.1:51234/cb", "http://127.0.0.1/cb", "http://[::1]:1/cb?app=1", "http://[::1]/cb?app=1"} {
		if res := redeem(uri, uri); res.status != 200 {
			t.Errorf("%s: token: %d %s", uri, res.status, res.body)
		}
	}
	// The token endpoint wants the very URI of the authorization request
	// (RFC 6749 §4.1.3), not another port nor the registered one.
	for _, other := range []string{"http://127.0.0.1:51235/cb", "http://127.0.0.1/cb"} {
		wantError(t, redeem("http://127.0.0.1:51234/cb", other), http.StatusBadRequest, "invalid_grant")
	}
	for _, uri := range []string{
		"http://127.0.0.1:51234/cb/", "http://127.0.0.1:51234/CB", "http://127.0.0.1:51234/cb?x=1", "http://127.0.0.1:51234/cb?",
		"http://localhost:51234/cb", "https://127.0.0.1:51234/cb", "http://127.0.0.1:0/cb", "http://127.0.0.1:051234/cb",
		"http://127.0.0.1:51234/cb#x", "http://[::1]:8080/cb", "http://127.0.0.1:51234/cb?app=1", "http://[::1]:9/cb?app=2",
		"http://user@127.0.0.1:51234/cb",
	} {
		_, challenge := pkce()
		wantPage(t, e.authorize(authParams("native", "redirect_uri", uri, "code_challenge", challenge, "code_challenge_method", "S256"), testUser),
			http.StatusBadRequest)
	}
}
