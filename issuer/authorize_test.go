package issuer

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAuthorizeClientAndRedirectErrorsArePages(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	cases := []struct {
		name   string
		params url.Values
	}{
		{"missing client_id", url.Values{"response_type": {"code"}}},
		{"unknown client", authParams("nobody", "redirect_uri", confRedirect)},
		{"repeated client_id", url.Values{"response_type": {"code"}, "client_id": {"conf", "conf"}}},
		{"repeated redirect_uri", url.Values{"response_type": {"code"}, "client_id": {"conf"}, "redirect_uri": {confRedirect, confRedirect}}},
		{"missing redirect_uri with several registered", authParams("multi")},
		{"unregistered redirect_uri", authParams("conf", "redirect_uri", "https://evil.example/cb")},
		{"trailing slash", authParams("conf", "redirect_uri", confRedirect+"/")},
		{"extra query", authParams("conf", "redirect_uri", confRedirect+"?a=b")},
		{"empty query", authParams("conf", "redirect_uri", confRedirect+"?")},
		{"fragment", authParams("conf", "redirect_uri", confRedirect+"#x")},
		{"case", authParams("conf", "redirect_uri", strings.ToUpper(confRedirect))},
		{"port", authParams("conf", "redirect_uri", "https://app.example:443/cb")},
		{"http instead of https", authParams("conf", "redirect_uri", "http://app.example/cb")},
		{"prefix", authParams("conf", "redirect_uri", confRedirect+"x")},
		{"missing query of registered", authParams("skip", "redirect_uri", "https://skip.example/cb")},
		{"different query of registered", authParams("skip", "redirect_uri", "https://skip.example/cb?x=2")},
		{"other client's URI", authParams("pub", "redirect_uri", confRedirect, "code_challenge", challenge, "code_challenge_method", "S256")},
		// Even with every later parameter wrong, no redirect happens.
		{"bad redirect and bad response_type", url.Values{"response_type": {"token"}, "client_id": {"conf"}, "redirect_uri": {"https://evil.example/"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := e.authorize(tc.params, testUser)
			wantPage(t, res, http.StatusBadRequest)
		})
	}
	if n := e.store.codeCount(); n != 0 {
		t.Errorf("%d codes stored", n)
	}
}

func TestAuthorizeRedirectURIExactMatchAccepted(t *testing.T) {
	e := newEnv(t)
	// Both registered URIs of a multi-URI client, and the omitted
	// redirect_uri of a single-URI client, reach the consent page.
	for _, p := range []url.Values{
		authParams("multi", "redirect_uri", "https://m.example/a"),
		authParams("multi", "redirect_uri", "https://m.example/b"),
		authParams("conf"),
	} {
		res := e.authorize(p, testUser)
		if res.status != http.StatusOK {
			t.Errorf("%v: status %d, body %.300s", p, res.status, res.body)
		}
	}
}

func TestAuthorizeErrorsRedirect(t *testing.T) {
	_, challenge := pkce()
	cases := []struct {
		name     string
		params   url.Values
		redirect string
		code     string
		state    string
		pkce     bool
	}{
		{"missing response_type", url.Values{"client_id": {"conf"}, "state": {"s1"}}, confRedirect, "invalid_request", "s1", false},
		{"response_type token", authParams("conf", "response_type", "token", "state", "s2"), confRedirect, "unsupported_response_type", "s2", false},
		{"response_type code id_token", authParams("conf", "response_type", "code id_token"), confRedirect, "unsupported_response_type", "", false},
		{"repeated response_type", url.Values{"client_id": {"conf"}, "response_type": {"code", "code"}, "state": {"s"}}, confRedirect, "invalid_request", "s", false},
		{"repeated scope", url.Values{"client_id": {"conf"}, "response_type": {"code"}, "scope": {"read", "write"}, "state": {"s"}}, confRedirect, "invalid_request", "s", false},
		{"repeated state", url.Values{"client_id": {"conf"}, "response_type": {"code"}, "state": {"a", "b"}}, confRedirect, "invalid_request", "", false},
		{"unauthorized client", authParams("ccredir", "state", "s3"), "https://ccr.example/cb", "unauthorized_client", "s3", false},
		{"unknown scope", authParams("conf", "scope", "read delete", "state", "s4"), confRedirect, "invalid_scope", "s4", false},
		{"malformed scope", authParams("conf", "scope", "read\x00", "state", "s4"), confRedirect, "invalid_scope", "s4", false},
		{"another client's scope", authParams("pub", "scope", "admin", "code_challenge", challenge, "code_challenge_method", "S256"), pubRedirect, "invalid_scope", "", false},
		{"public without PKCE", authParams("pub", "state", "s5"), pubRedirect, "invalid_request", "s5", false},
		{"plain PKCE", authParams("conf", "code_challenge", challenge, "code_challenge_method", "plain"), confRedirect, "invalid_request", "", false},
		{"PKCE without method (plain)", authParams("conf", "code_challenge", challenge), confRedirect, "invalid_request", "", false},
		{"PKCE unknown method", authParams("conf", "code_challenge", challenge, "code_challenge_method", "S512"), confRedirect, "invalid_request", "", false},
		{"PKCE lower-case method", authParams("conf", "code_challenge", challenge, "code_challenge_method", "s256"), confRedirect, "invalid_request", "", false},
		{"method without challenge", authParams("conf", "code_challenge_method", "S256"), confRedirect, "invalid_request", "", false},
		{"challenge too short", authParams("conf", "code_challenge", strings.Repeat("a", 42), "code_challenge_method", "S256"), confRedirect, "invalid_request", "", false},
		{"challenge too long", authParams("conf", "code_challenge", strings.Repeat("a", 129), "code_challenge_method", "S256"), confRedirect, "invalid_request", "", false},
		{"challenge bad chars", authParams("conf", "code_challenge", strings.Repeat("a", 42)+"+", "code_challenge_method", "S256"), confRedirect, "invalid_request", "", false},
		{"RequirePKCE confidential", authParams("conf", "state", "s6"), confRedirect, "invalid_request", "s6", true},
		{"redirect keeps registered query", authParams("skip", "response_type", "token"), skipRedirect, "unsupported_response_type", "", false},
	}
	plain, strict := newEnv(t), newEnv(t, func(c *Config) { c.RequirePKCE = true })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := plain
			if tc.pkce {
				e = strict
			}
			res := e.authorize(tc.params, testUser)
			wantRedirectError(t, res, tc.redirect, tc.code, tc.state)
			if res.status != http.StatusFound {
				t.Errorf("status %d, want 302 for GET", res.status)
			}
			u, q := res.location(t)
			if q.Get("iss") != e.ts.URL {
				t.Errorf("iss = %q, want %q", q.Get("iss"), e.ts.URL)
			}
			if strings.HasPrefix(tc.redirect, skipRedirect) && q.Get("x") != "1" {
				t.Errorf("registered query lost: %s", u)
			}
		})
	}
	if n := plain.store.codeCount() + strict.store.codeCount(); n != 0 {
		t.Errorf("%d codes stored", n)
	}
}

func TestAuthorizePKCEAcceptedLengths(t *testing.T) {
	e := newEnv(t)
	for _, n := range []int{43, 128} {
		ch := strings.Repeat("A-._~", 30)[:n]
		res := e.authorize(authParams("pub", "code_challenge", ch, "code_challenge_method", "S256"), testUser)
		if res.status != http.StatusOK {
			t.Errorf("challenge of %d chars: status %d", n, res.status)
		}
	}
}

func TestAuthorizeWithoutSubject(t *testing.T) {
	e := newEnv(t)
	for _, p := range []url.Values{authParams("conf"), authParams("skip")} {
		res := e.authorize(p, "")
		wantPage(t, res, http.StatusUnauthorized)
		if !strings.Contains(res.body, "authentication handler") || !strings.Contains(res.body, "oauth2_server") {
			t.Errorf("page does not explain the missing authentication handler: %s", res.body)
		}
	}
	// A valid consent form posted without a subject gives no code either.
	page := e.authorize(authParams("conf"), testUser)
	form := hiddenFields(page.body)
	form.Set("decision", "approve")
	wantPage(t, e.consent(form, ""), http.StatusUnauthorized)
	if n := e.store.codeCount(); n != 0 {
		t.Errorf("%d codes stored without a subject", n)
	}
}

func TestConsentPage(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	state := `"><script>alert(1)</script>`
	res := e.authorize(authParams("conf", "scope", "write read", "state", state,
		"code_challenge", challenge, "code_challenge_method", "S256", "redirect_uri", confRedirect), testUser)
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	wantPageHeaders(t, res)
	if strings.Contains(res.body, "<script>") {
		t.Error("state is not escaped")
	}
	for _, want := range []string{"conf", "read", "write", testUser, `<form method="post">`, `value="approve"`, `value="deny"`} {
		if !strings.Contains(res.body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if strings.Contains(res.body, "admin") {
		t.Error("consent page shows a scope that was not requested")
	}
	f := hiddenFields(res.body)
	for k, want := range map[string]string{"client_id": "conf", "state": state, "scope": "write read",
		"code_challenge": challenge, "code_challenge_method": "S256", "redirect_uri": confRedirect, "response_type": "code"} {
		if f.Get(k) != want {
			t.Errorf("hidden %s = %q, want %q", k, f.Get(k), want)
		}
	}
	if f.Get("csrf_token") == "" {
		t.Error("no csrf_token")
	}
	if n := e.store.codeCount(); n != 0 {
		t.Errorf("consent page stored %d codes", n)
	}
}

func TestConsentApprove(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	res := e.authorize(authParams("conf", "state", "xyz", "code_challenge", challenge, "code_challenge_method", "S256"), testUser)
	form := hiddenFields(res.body)
	form.Set("decision", "approve")
	res = e.consent(form, testUser)
	if res.status != http.StatusSeeOther {
		t.Fatalf("status %d, want 303: %s", res.status, res.body)
	}
	u, q := res.location(t)
	if !strings.HasPrefix(u.String(), confRedirect+"?") {
		t.Errorf("redirected to %s", u)
	}
	if q.Get("state") != "xyz" || q.Get("iss") != e.ts.URL || q.Get("error") != "" {
		t.Errorf("redirect query %v", q)
	}
	raw := q.Get("code")
	if !strings.HasPrefix(raw, "cac_") {
		t.Fatalf("code %q lacks the code prefix", raw)
	}
	c := e.store.code(e.hasher.Key(raw))
	if c == nil {
		t.Fatal("code not stored under its HMAC key")
	}
	if c.ClientID != "conf" || c.Subject != testUser || c.Scope != "read write admin" || c.RedirectURI != "" ||
		c.CodeChallenge != challenge || c.CodeChallengeMethod != "S256" || c.Family == "" ||
		!c.IssuedAt.Equal(e.clock.Now()) || !c.ExpiresAt.Equal(e.clock.Now().Add(DefaultCodeLifetime)) {
		t.Errorf("stored code %+v", c)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
}

func TestConsentStoresGivenRedirectURI(t *testing.T) {
	e := newEnv(t)
	raw := e.code(authParams("multi", "redirect_uri", "https://m.example/b", "scope", "read"))
	if c := e.store.code(e.hasher.Key(raw)); c == nil || c.RedirectURI != "https://m.example/b" || c.CodeChallenge != "" {
		t.Errorf("stored code %+v", c)
	}
}

func TestConsentDeny(t *testing.T) {
	e := newEnv(t)
	for _, d := range []string{"deny", "", "maybe"} {
		// Each decision on a fresh form: a form is single-use.
		form := hiddenFields(e.authorize(authParams("conf", "state", "st"), testUser).body)
		form.Set("decision", d)
		res := e.consent(form, testUser)
		wantRedirectError(t, res, confRedirect, "access_denied", "st")
		if res.status != http.StatusSeeOther {
			t.Errorf("status %d, want 303", res.status)
		}
	}
	if n := e.store.codeCount(); n != 0 {
		t.Errorf("%d codes stored after denial", n)
	}
}

func TestConsentCSRF(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	_, otherChallenge := pkce()
	page := e.authorize(authParams("conf", "state", "st", "scope", "read", "code_challenge", challenge, "code_challenge_method", "S256"), testUser)
	good := hiddenFields(page.body)
	good.Set("decision", "approve")
	tok := good.Get("csrf_token")
	iat, nonceMAC, _ := strings.Cut(tok, ".")
	nonce, mac, _ := strings.Cut(nonceMAC, ".")
	iatN, _ := strconv.ParseInt(iat, 10, 64)

	other := newEnv(t) // another server, another random CSRF key
	cases := []struct {
		name string
		mod  func(url.Values)
		user string
		e    *env
		wait time.Duration
	}{
		{"missing token", func(f url.Values) { f.Del("csrf_token") }, testUser, e, 0},
		{"garbage token", func(f url.Values) { f.Set("csrf_token", "garbage") }, testUser, e, 0},
		{"tampered mac", func(f url.Values) { f.Set("csrf_token", iat+"."+nonce+"."+strings.Repeat("A", len(mac))) }, testUser, e, 0},
		{"moved issued-at", func(f url.Values) { f.Set("csrf_token", strconv.FormatInt(iatN+1, 10)+"."+nonceMAC) }, testUser, e, 0},
		{"other nonce", func(f url.Values) { f.Set("csrf_token", iat+"."+strings.Repeat("0", len(nonce))+"."+mac) }, testUser, e, 0},
		{"no nonce", func(f url.Values) { f.Set("csrf_token", iat+".."+mac) }, testUser, e, 0},
		{"signed issued-at", func(f url.Values) { f.Set("csrf_token", "+"+tok) }, testUser, e, 0},
		{"widened scope", func(f url.Values) { f.Set("scope", "read write") }, testUser, e, 0},
		{"omitted scope (means all)", func(f url.Values) { f.Del("scope") }, testUser, e, 0},
		{"changed state", func(f url.Values) { f.Set("state", "other") }, testUser, e, 0},
		{"changed challenge", func(f url.Values) { f.Set("code_challenge", otherChallenge) }, testUser, e, 0},
		{"changed redirect_uri", func(f url.Values) { f.Set("redirect_uri", confRedirect) }, testUser, e, 0},
		{"other user", func(url.Values) {}, "mallory", e, 0},
		{"expired", func(url.Values) {}, testUser, e, consentTTL + time.Second},
		{"other server key", func(url.Values) {}, testUser, other, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{}
			for k, v := range good {
				form[k] = append([]string(nil), v...)
			}
			tc.mod(form)
			tc.e.clock.Advance(tc.wait)
			defer tc.e.clock.Advance(-tc.wait)
			res := tc.e.consent(form, tc.user)
			wantPage(t, res, http.StatusForbidden)
		})
	}
	if n := e.store.codeCount() + other.store.codeCount(); n != 0 {
		t.Fatalf("%d codes stored", n)
	}
	// The untouched form still works, once, within its lifetime.
	e.clock.Advance(consentTTL - time.Second)
	if res := e.consent(good, testUser); res.status != http.StatusSeeOther {
		t.Errorf("valid form: status %d", res.status)
	}
}

func TestConsentCSRFSharedKey(t *testing.T) {
	key := []byte("shared consent key")
	a := newEnv(t, func(c *Config) { c.CSRFKey = key })
	b := newEnv(t, func(c *Config) { c.CSRFKey = key; c.Codes = a.store })
	page := a.authorize(authParams("conf"), testUser)
	form := hiddenFields(page.body)
	form.Set("decision", "approve")
	if res := b.consent(form, testUser); res.status != http.StatusSeeOther {
		t.Errorf("form from a server with the same key and code store: status %d", res.status)
	}
	// Exactly once between the two: the first server refuses it now.
	wantPage(t, a.consent(form, testUser), http.StatusForbidden)
}

// TestConsentSingleUse submits one consent form twice: the second
// submission, approving or denying, gets an error page and no code.
func TestConsentSingleUse(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	page := e.authorize(authParams("conf", "state", "st", "code_challenge", challenge, "code_challenge_method", "S256"), testUser)
	form := hiddenFields(page.body)
	form.Set("decision", "approve")
	if res := e.consent(form, testUser); res.status != http.StatusSeeOther || res.header.Get("Location") == "" {
		t.Fatalf("first submission: status %d", res.status)
	}
	for _, d := range []string{"approve", "deny"} {
		form.Set("decision", d)
		res := e.consent(form, testUser)
		wantPage(t, res, http.StatusForbidden)
		if !strings.Contains(res.body, "already") {
			t.Errorf("second submission (%s): page does not say the form was used: %.300s", d, res.body)
		}
	}
	if n := e.store.codeCount(); n != 1 {
		t.Errorf("%d codes issued from one consent form, want 1", n)
	}
	// A form denied first cannot be approved afterwards either.
	form = hiddenFields(e.authorize(authParams("conf", "state", "st2"), testUser).body)
	form.Set("decision", "deny")
	wantRedirectError(t, e.consent(form, testUser), confRedirect, "access_denied", "st2")
	form.Set("decision", "approve")
	wantPage(t, e.consent(form, testUser), http.StatusForbidden)
	if n := e.store.codeCount(); n != 1 {
		t.Errorf("%d codes after a denied form was approved again, want 1", n)
	}
}

func TestSkipConsent(t *testing.T) {
	e := newEnv(t)
	res := e.authorize(authParams("skip", "state", "s"), testUser)
	if res.status != http.StatusFound {
		t.Fatalf("status %d, want 302: %.300s", res.status, res.body)
	}
	u, q := res.location(t)
	if u.Host != "skip.example" || q.Get("x") != "1" || q.Get("state") != "s" || q.Get("iss") != e.ts.URL || q.Get("code") == "" {
		t.Errorf("redirect %s", u)
	}
	if !strings.HasPrefix(u.RawQuery, "x=1&") {
		t.Errorf("registered query not kept first: %s", u.RawQuery)
	}
}

func TestAuthorizeConfiguredIssuer(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Issuer = "https://auth.example" })
	_, q := e.authorize(authParams("skip"), testUser).location(t)
	if q.Get("iss") != "https://auth.example" {
		t.Errorf("iss = %q", q.Get("iss"))
	}
}

func TestAuthorizeMethodsAndBodies(t *testing.T) {
	e := newEnv(t)
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
		req, _ := http.NewRequest(m, e.ts.URL+AuthorizePath+"?"+authParams("conf").Encode(), nil)
		res := e.do(req)
		if res.status != http.StatusMethodNotAllowed || res.header.Get("Allow") != "GET, POST" {
			t.Errorf("%s: status %d, Allow %q", m, res.status, res.header.Get("Allow"))
		}
	}
	big := url.Values{"client_id": {"conf"}, "state": {strings.Repeat("x", DefaultMaxBodyBytes)}}
	wantPage(t, e.consent(big, testUser), http.StatusRequestEntityTooLarge)

	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+AuthorizePath, strings.NewReader(`{"client_id":"conf"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Test-User", testUser)
	wantPage(t, e.do(req), http.StatusBadRequest)

	// Parameters in the query of a POST are not the form.
	req, _ = http.NewRequest(http.MethodPost, e.ts.URL+AuthorizePath+"?"+authParams("skip").Encode(), strings.NewReader(""))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Test-User", testUser)
	wantPage(t, e.do(req), http.StatusBadRequest)
}
