package issuer

import (
	"crypto/rand"
	"crypto/rsa"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/jwt"
)

const logoutRedirect = "https://app.example/bye"

// withRPOIDC turns OpenID Connect on with an RS256 ring, lets conf, pub and
// skip ask for openid and registers conf's post-logout URI. authTime is
// Config.OIDC.AuthTime (nil: unknown).
func withRPOIDC(t *testing.T, authTime func(*http.Request) time.Time) (func(*Config), *jwt.Ring) {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwt.NewKey(priv) // a configured key, as signing_key gives
	if err != nil {
		t.Fatal(err)
	}
	ring, err := jwt.NewRing(jwt.RingConfig{Keys: []*jwt.Key{k}})
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) {
		for _, id := range []string{"conf", "pub", "skip"} {
			c.Clients[id].Scopes = append(c.Clients[id].Scopes, "openid")
		}
		c.Clients["conf"].PostLogoutRedirectURIs = []string{logoutRedirect}
		c.OIDC = &OIDC{Ring: ring, AuthTime: authTime}
	}, ring
}

// oidcAuth is an authorization request for openid with PKCE.
func oidcAuth(clientID string, kv ...string) url.Values {
	_, challenge := pkce()
	return authParams(clientID, append([]string{"scope", "openid", "state", "st", "code_challenge", challenge, "code_challenge_method", "S256"}, kv...)...)
}

func redirectOf(clientID string) string {
	switch clientID {
	case "pub":
		return pubRedirect
	case "skip":
		return skipRedirect
	}
	return confRedirect
}

// TestOIDCRequestParams checks the OpenID Connect authorization request
// parameters of OIDC Core §3.1.2.1 over HTTP: errors go back to the client
// by redirect with §3.1.2.6's codes, never a page.
func TestOIDCRequestParams(t *testing.T) {
	mod, _ := withRPOIDC(t, nil)
	e := newEnv(t, mod)
	for _, tc := range []struct {
		name   string
		client string
		kv     []string
		user   string
		code   string // "" when a code, "page" when the consent page
	}{
		{"public client without nonce", "pub", nil, testUser, errCodeInvalidRequest},
		{"public client with nonce", "pub", []string{"nonce", "n-1"}, testUser, "page"},
		{"confidential client without nonce", "conf", nil, testUser, "page"},
		{"nonce too long", "conf", []string{"nonce", strings.Repeat("n", 513)}, testUser, errCodeInvalidRequest},
		{"request object", "conf", []string{"request", "eyJhbGciOiJub25lIn0.e30."}, testUser, errCodeRequestNotSupported},
		{"claims parameter is ignored", "conf", []string{"claims", `{"id_token":{"acr":{"essential":true}}}`}, testUser, "page"},
		{"prompt=none, nobody signed in", "conf", []string{"prompt", "none"}, "", errCodeLoginRequired},
		{"prompt=none, consent needed", "conf", []string{"prompt", "none"}, testUser, errCodeConsentRequired},
		{"prompt=none, dynamic-free skip_consent client", "skip", []string{"prompt", "none"}, testUser, ""},
		{"prompt=none with login", "conf", []string{"prompt", "none login"}, testUser, errCodeInvalidRequest},
		{"prompt unknown value", "conf", []string{"prompt", "create"}, testUser, errCodeInvalidRequest},
		{"prompt empty", "conf", []string{"prompt", " "}, testUser, errCodeInvalidRequest},
		{"prompt=select_account", "skip", []string{"prompt", "select_account"}, testUser, ""},
		{"prompt=consent shows the page to a skip_consent client", "skip", []string{"prompt", "consent"}, testUser, "page"},
		{"prompt=login, auth time unknown", "skip", []string{"prompt", "login"}, testUser, errCodeLoginRequired},
		{"max_age, auth time unknown", "skip", []string{"max_age", "3600"}, testUser, errCodeLoginRequired},
		{"max_age malformed", "skip", []string{"max_age", "-1"}, testUser, errCodeInvalidRequest},
		{"max_age not a number", "skip", []string{"max_age", "1h"}, testUser, errCodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.authorize(oidcAuth(tc.client, tc.kv...), tc.user)
			switch tc.code {
			case "page":
				wantPage(t, res, http.StatusOK)
				if !strings.Contains(res.body, `name="csrf_token"`) {
					t.Errorf("not the consent page: %.300s", res.body)
				}
			case "":
				_, q := res.location(t)
				if q.Get("code") == "" {
					t.Errorf("no code: %v", q)
				}
			default:
				wantRedirectError(t, res, redirectOf(tc.client), tc.code, "st")
			}
		})
	}
	// A request without openid is plain OAuth: prompt is not read.
	res := e.authorize(authParams("skip", "scope", "read", "prompt", "login"), testUser)
	if _, q := res.location(t); q.Get("code") == "" {
		t.Errorf("plain OAuth request with prompt=login: %v", q)
	}
	// A request object is refused with or without openid.
	wantRedirectError(t, e.authorize(authParams("skip", "scope", "read", "state", "st", "request", "x.y.z"), testUser),
		skipRedirect, errCodeRequestNotSupported, "st")
	// A request_uri by reference is refused: by redirect with
	// request_uri_not_supported here, or, once the PAR endpoint reads every
	// request_uri first, as a request_uri this server did not issue (a 400
	// page). Never a code, never a consent page.
	res = e.authorize(oidcAuth("conf", "request_uri", "https://app.example/req.jwt"), testUser)
	if res.status == http.StatusBadRequest {
		wantPage(t, res, http.StatusBadRequest)
	} else {
		wantRedirectError(t, res, confRedirect, errCodeRequestURINotSupported, "st")
	}
	// A pushed request's request_uri is not a request object.
	res = e.authorize(oidcAuth("conf", "request_uri", "urn:ietf:params:oauth:request_uri:abc"), testUser)
	if u := res.header.Get("Location"); strings.Contains(u, errCodeRequestURINotSupported) {
		t.Errorf("a PAR request_uri was refused as a request object: %s", u)
	}
	// A repeated OpenID Connect parameter.
	p := oidcAuth("conf")
	p["prompt"] = []string{"consent", "login"}
	wantRedirectError(t, e.authorize(p, testUser), confRedirect, errCodeInvalidRequest, "st")
}

// TestOIDCAuthTime checks prompt=login and max_age against the
// authentication time the handler in front reports.
func TestOIDCAuthTime(t *testing.T) {
	var authTime time.Time
	mod, _ := withRPOIDC(t, func(*http.Request) time.Time { return authTime })
	clk := newClock()
	e := newEnvClock(t, clk, mod)
	now := clk.Now()
	for _, tc := range []struct {
		name string
		ago  time.Duration // 0: unknown
		kv   []string
		ok   bool
	}{
		{"prompt=login, just authenticated", 10 * time.Second, []string{"prompt", "login"}, true},
		{"prompt=login, old authentication", 5 * time.Minute, []string{"prompt", "login"}, false},
		{"prompt=login, no authentication time", 0, []string{"prompt", "login"}, false},
		{"max_age within", 30 * time.Second, []string{"max_age", "60"}, true},
		{"max_age exceeded", 2 * time.Minute, []string{"max_age", "60"}, false},
		{"max_age=0, auth time unknown", 0, []string{"max_age", "0"}, false},
		{"prompt=none with max_age exceeded", 2 * time.Minute, []string{"prompt", "none", "max_age", "60"}, false},
		{"prompt=none with max_age within", 10 * time.Second, []string{"prompt", "none", "max_age", "60"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authTime = time.Time{}
			if tc.ago > 0 {
				authTime = now.Add(-tc.ago)
			}
			res := e.authorize(oidcAuth("skip", tc.kv...), testUser)
			if tc.ok {
				if _, q := res.location(t); q.Get("code") == "" {
					t.Errorf("want a code: %v", q)
				}
				return
			}
			wantRedirectError(t, res, skipRedirect, errCodeLoginRequired, "st")
		})
	}
	authTime = now
	if _, q := e.authorize(oidcAuth("skip", "max_age", "0"), testUser).location(t); q.Get("code") == "" {
		t.Errorf("max_age=0 right after authentication: %v", q)
	}
}

// TestOIDCLoginHint checks that login_hint reaches the consent template.
func TestOIDCLoginHint(t *testing.T) {
	mod, _ := withRPOIDC(t, nil)
	tmpl := template.Must(template.New(ConsentTemplateName).Parse(`hint=[{{.LoginHint}}] user=[{{.Subject}}]{{range .Fields}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">{{end}}`))
	e := newEnv(t, mod, func(c *Config) { c.ConsentTemplate = tmpl })
	res := e.authorize(oidcAuth("conf", "login_hint", "alice@example.com"), testUser)
	if res.status != http.StatusOK || !strings.Contains(res.body, "hint=[alice@example.com] user=[alice]") {
		t.Fatalf("consent page: %d %.300s", res.status, res.body)
	}
	res = e.authorize(oidcAuth("conf", "login_hint", "<b>x</b>"), testUser)
	if strings.Contains(res.body, "<b>x</b>") {
		t.Errorf("login_hint not escaped: %.300s", res.body)
	}
}
