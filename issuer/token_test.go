package issuer

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

func TestTokenEndpointRequestErrors(t *testing.T) {
	e := newEnv(t)
	cc := url.Values{"grant_type": {"client_credentials"}}
	raw := func(method, ctype, body string, hdr ...string) func() result {
		return func() result {
			req, _ := http.NewRequest(method, e.ts.URL+TokenPath, strings.NewReader(body))
			if ctype != "" {
				req.Header.Set("Content-Type", ctype)
			}
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Add(hdr[i], hdr[i+1])
			}
			return e.do(req)
		}
	}
	basic := func(id, secret string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
	}
	cases := []struct {
		name   string
		do     func() result
		status int
		code   string
	}{
		{"json body", raw("POST", "application/json", `{"grant_type":"client_credentials"}`), 400, "invalid_request"},
		{"no content type", raw("POST", "", "grant_type=client_credentials"), 400, "invalid_request"},
		{"multipart", raw("POST", "multipart/form-data; boundary=x", "--x--"), 400, "invalid_request"},
		{"content type with charset", raw("POST", "application/x-www-form-urlencoded; charset=UTF-8", "grant_type=client_credentials&client_id=svc&client_secret="+svcSecret), 200, ""},
		{"malformed body", raw("POST", "application/x-www-form-urlencoded", "grant_type=%zz"), 400, "invalid_request"},
		{"missing grant_type", func() result { return e.post(TokenPath, url.Values{}, "svc", svcSecret) }, 400, "invalid_request"},
		{"repeated grant_type", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"client_credentials", "client_credentials"}}, "svc", svcSecret)
		}, 400, "invalid_request"},
		{"repeated scope", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "scope": {"svc.read", "svc.read"}}, "svc", svcSecret)
		}, 400, "invalid_request"},
		{"unknown grant", func() result { return e.post(TokenPath, url.Values{"grant_type": {"foo"}}, "svc", svcSecret) }, 400, "unsupported_grant_type"},
		{"password grant", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"password"}, "username": {"a"}, "password": {"b"}}, "svc", svcSecret)
		}, 400, "unsupported_grant_type"},
		{"implicit as grant", func() result { return e.post(TokenPath, url.Values{"grant_type": {"implicit"}}, "svc", svcSecret) }, 400, "unsupported_grant_type"},
		{"unknown scope", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "scope": {"svc.read admin"}}, "svc", svcSecret)
		}, 400, "invalid_scope"},
		{"wrong secret basic", func() result { return e.post(TokenPath, cc, "svc", "wrong") }, 401, "invalid_client"},
		{"wrong secret post", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {"wrong"}})
		}, 401, "invalid_client"},
		{"unknown client basic", func() result { return e.post(TokenPath, cc, "nobody", "x") }, 401, "invalid_client"},
		{"unknown client post", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {"nobody"}, "client_secret": {"x"}})
		}, 401, "invalid_client"},
		{"no client", func() result { return e.post(TokenPath, cc) }, 401, "invalid_client"},
		{"confidential client without secret", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}})
		}, 401, "invalid_client"},
		{"confidential client empty basic password", func() result { return e.post(TokenPath, cc, "svc", "") }, 401, "invalid_client"},
		{"public client with secret", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {"pub"}, "client_secret": {"x"}})
		}, 401, "invalid_client"},
		{"basic and post", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "client_secret": {svcSecret}}, "svc", svcSecret)
		}, 400, "invalid_request"},
		{"basic and other client_id", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {"conf"}}, "svc", svcSecret)
		}, 400, "invalid_request"},
		{"basic with same client_id", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}}, "svc", svcSecret)
		}, 200, ""},
		{"bearer header", raw("POST", "application/x-www-form-urlencoded", "grant_type=client_credentials", "Authorization", "Bearer abc"), 401, "invalid_client"},
		{"malformed basic", raw("POST", "application/x-www-form-urlencoded", "grant_type=client_credentials", "Authorization", "Basic !!!"), 401, "invalid_client"},
		{"basic not url-encoded", raw("POST", "application/x-www-form-urlencoded", "grant_type=client_credentials", "Authorization", basic("conf", "%zz")), 401, "invalid_client"},
		{"two Authorization headers", raw("POST", "application/x-www-form-urlencoded", "grant_type=client_credentials",
			"Authorization", basic("svc", svcSecret), "Authorization", basic("svc", svcSecret)), 400, "invalid_request"},
		{"secret over 72 bytes sharing the prefix", func() result {
			return e.post(TokenPath, cc, "svc", svcSecret+strings.Repeat("x", 80))
		}, 401, "invalid_client"},
		{"client_credentials by public client", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {"pub"}})
		}, 400, "unauthorized_client"},
		{"authorization_code by cc-only client", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, "svc", svcSecret)
		}, 400, "unauthorized_client"},
		{"refresh_token by client without it", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, "norefresh", nrSecret)
		}, 400, "unauthorized_client"},
		{"missing code", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"authorization_code"}}, "conf", confSecret)
		}, 400, "invalid_request"},
		{"missing refresh_token", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"refresh_token"}}, "conf", confSecret)
		}, 400, "invalid_request"},
		{"malformed code", func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {"abc"}}, "conf", confSecret)
		}, 400, "invalid_grant"},
		{"unknown code", func() result {
			c, _ := token.New(token.CodePrefix)
			return e.post(TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {c}}, "conf", confSecret)
		}, 400, "invalid_grant"},
		{"access token as code", func() result {
			c, _ := token.New(token.AccessPrefix)
			return e.post(TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {c}}, "conf", confSecret)
		}, 400, "invalid_grant"},
		{"unknown refresh token", func() result {
			c, _ := token.New(token.RefreshPrefix)
			return e.post(TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c}}, "conf", confSecret)
		}, 400, "invalid_grant"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.do()
			if tc.status == 200 {
				if res.status != 200 {
					t.Errorf("status %d: %s", res.status, res.body)
				}
				return
			}
			wantError(t, res, tc.status, tc.code)
		})
	}
}

func TestTokenMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{TokenPath, RevokePath, IntrospectPath} {
		for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead} {
			req, _ := http.NewRequest(m, e.ts.URL+path+"?grant_type=client_credentials", nil)
			res := e.do(req)
			if res.status != http.StatusMethodNotAllowed || res.header.Get("Allow") != "POST" {
				t.Errorf("%s %s: status %d, Allow %q", m, path, res.status, res.header.Get("Allow"))
			}
		}
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	for _, path := range []string{TokenPath, RevokePath, IntrospectPath} {
		form := url.Values{"grant_type": {"client_credentials"}, "token": {"x"}, "pad": {strings.Repeat("a", 2000)}}
		wantError(t, e.post(path, form, "svc", svcSecret), http.StatusRequestEntityTooLarge, "invalid_request")

		// Without a Content-Length the limit holds while reading.
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+path, struct{ *strings.Reader }{strings.NewReader(form.Encode())})
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", svcSecret)
		res := e.do(req)
		if res.status != http.StatusRequestEntityTooLarge {
			t.Errorf("%s chunked: status %d", path, res.status)
		}
	}
	small := url.Values{"grant_type": {"client_credentials"}, "pad": {strings.Repeat("a", 900)}}
	if res := e.post(TokenPath, small, "svc", svcSecret); res.status != http.StatusOK {
		t.Errorf("body under the limit: status %d", res.status)
	}
}

func TestClientSecretPostAndBasic(t *testing.T) {
	e := newEnv(t)
	// client_secret_basic with a secret that needs form-urlencoding.
	res := e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, "ccredir", ccrSecret)
	if res.status != 200 {
		t.Fatalf("basic: %d %s", res.status, res.body)
	}
	verifier, challenge := pkce()
	c := e.code(authParams("conf", "code_challenge", challenge, "code_challenge_method", "S256"))
	res = e.post(TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {c}, "code_verifier": {verifier}}, "conf", confSecret)
	if res.status != 200 {
		t.Fatalf("basic with encoded secret: %d %s", res.status, res.body)
	}
	// client_secret_post.
	c = e.code(authParams("conf", "code_challenge", challenge, "code_challenge_method", "S256"))
	res = e.post(TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {c}, "code_verifier": {verifier},
		"client_id": {"conf"}, "client_secret": {confSecret}})
	if res.status != 200 {
		t.Fatalf("post: %d %s", res.status, res.body)
	}
}

func TestSecretMemo(t *testing.T) {
	e := newEnv(t)
	cc := url.Values{"grant_type": {"client_credentials"}}
	for range 3 {
		if res := e.post(TokenPath, cc, "svc", svcSecret); res.status != 200 {
			t.Fatalf("status %d", res.status)
		}
	}
	// A wrong secret after the memo is set still fails (bcrypt fallback).
	wantError(t, e.post(TokenPath, cc, "svc", svcSecret+"x"), 401, "invalid_client")
	wantError(t, e.post(TokenPath, cc, "svc", ""), 401, "invalid_client")
	if res := e.post(TokenPath, cc, "svc", svcSecret); res.status != 200 {
		t.Fatalf("status %d after a failure", res.status)
	}
	e.post(TokenPath, cc, "ccredir", ccrSecret)
	e.post(TokenPath, cc, "nobody", "x")
	e.srv.memoMu.RLock()
	n := len(e.srv.memo)
	e.srv.memoMu.RUnlock()
	if n != 2 {
		t.Errorf("memo holds %d entries, want one per authenticated client (2)", n)
	}
}

func TestAuthorizationCodeGrant(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	c := e.code(authParams("conf", "scope", "read", "redirect_uri", confRedirect, "code_challenge", challenge, "code_challenge_method", "S256"))
	res := e.post(TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {c}, "code_verifier": {verifier},
		"redirect_uri": {confRedirect}}, "conf", confSecret)
	if res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	for k, want := range map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache"} {
		if got := res.header.Get(k); got != want {
			t.Errorf("%s = %q", k, got)
		}
	}
	m := res.json(t)
	if m["token_type"] != "Bearer" || m["expires_in"] != float64(3600) || m["scope"] != "read" {
		t.Errorf("response %v", m)
	}
	at, _ := m["access_token"].(string)
	rt, _ := m["refresh_token"].(string)
	if !token.WellFormed(token.AccessPrefix, at) || !token.WellFormed(token.RefreshPrefix, rt) {
		t.Fatalf("tokens %q %q", at, rt)
	}
	ai, ri := e.introspect(at), e.introspect(rt)
	if ai["sub"] != testUser || ai["client_id"] != "conf" || ai["scope"] != "read" || ai["token_type"] != "Bearer" ||
		ai["exp"] != float64(e.clock.Now().Add(time.Hour).Unix()) || ai["iat"] != float64(e.clock.Now().Unix()) || ai["iss"] != e.ts.URL {
		t.Errorf("access token introspection %v", ai)
	}
	if ri["token_type"] != "refresh_token" || ri["exp"] != float64(e.clock.Now().Add(DefaultRefreshTokenLifetime).Unix()) {
		t.Errorf("refresh token introspection %v", ri)
	}
	found := false
	for _, entry := range e.logs.FilterMessage("issued token").All() {
		f := entry.ContextMap()
		if entry.Level == zapcore.InfoLevel && f["client_id"] == "conf" && f["grant_type"] == "authorization_code" && f["scope"] == "read" {
			found = true
		}
	}
	if !found {
		t.Error("no info log for the issuance")
	}
}

func TestAuthorizationCodeGrantErrors(t *testing.T) {
	verifier, challenge := pkce()
	other, _ := pkce()
	type req struct {
		params url.Values // authorization request
		client string     // redeeming client
		form   url.Values // token request besides grant_type and code
	}
	withPKCE := func(client string, kv ...string) url.Values {
		return authParams(client, append([]string{"code_challenge", challenge, "code_challenge_method", "S256"}, kv...)...)
	}
	cases := []struct {
		name    string
		req     req
		advance time.Duration
	}{
		{"wrong verifier", req{withPKCE("conf"), "conf", url.Values{"code_verifier": {other}}}, 0},
		{"missing verifier", req{withPKCE("conf"), "conf", url.Values{}}, 0},
		{"malformed verifier", req{withPKCE("conf"), "conf", url.Values{"code_verifier": {"short"}}}, 0},
		{"challenge as verifier", req{withPKCE("conf"), "conf", url.Values{"code_verifier": {challenge}}}, 0},
		{"verifier without challenge (downgrade)", req{authParams("conf"), "conf", url.Values{"code_verifier": {verifier}}}, 0},
		{"redirect_uri missing at token", req{withPKCE("conf", "redirect_uri", confRedirect), "conf", url.Values{"code_verifier": {verifier}}}, 0},
		{"redirect_uri differs", req{withPKCE("multi", "redirect_uri", "https://m.example/a"), "multi",
			url.Values{"code_verifier": {verifier}, "redirect_uri": {"https://m.example/b"}}}, 0},
		{"redirect_uri trailing slash", req{withPKCE("conf", "redirect_uri", confRedirect), "conf",
			url.Values{"code_verifier": {verifier}, "redirect_uri": {confRedirect + "/"}}}, 0},
		{"unregistered redirect_uri when omitted before", req{withPKCE("conf"), "conf",
			url.Values{"code_verifier": {verifier}, "redirect_uri": {"https://evil.example/cb"}}}, 0},
		{"other client", req{withPKCE("conf"), "multi", url.Values{"code_verifier": {verifier}}}, 0},
		{"public client redeems confidential's code", req{withPKCE("conf"), "pub", url.Values{"code_verifier": {verifier}}}, 0},
		{"expired", req{withPKCE("conf"), "conf", url.Values{"code_verifier": {verifier}}}, DefaultCodeLifetime},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c := e.code(tc.req.params)
			e.clock.Advance(tc.advance)
			form := url.Values{"grant_type": {"authorization_code"}, "code": {c}}
			for k, v := range tc.req.form {
				form[k] = v
			}
			wantError(t, e.postAs(TokenPath, tc.req.client, form), 400, "invalid_grant")
			if n := e.store.tokenCount(); n != 0 {
				t.Errorf("%d tokens stored", n)
			}
		})
	}
}

func TestAuthorizationCodeRedirectURIOmittedTwice(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	for _, ru := range []string{"", confRedirect} {
		c := e.code(authParams("conf", "code_challenge", challenge, "code_challenge_method", "S256"))
		form := url.Values{"grant_type": {"authorization_code"}, "code": {c}, "code_verifier": {verifier}}
		if ru != "" {
			form.Set("redirect_uri", ru)
		}
		if res := e.post(TokenPath, form, "conf", confSecret); res.status != 200 {
			t.Errorf("redirect_uri %q at token: status %d %s", ru, res.status, res.body)
		}
	}
}

func TestConfidentialClientWithoutPKCE(t *testing.T) {
	e := newEnv(t)
	c := e.code(authParams("conf"))
	if res := e.post(TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {c}}, "conf", confSecret); res.status != 200 {
		t.Errorf("status %d: %s", res.status, res.body)
	}
}

func TestNoRefreshTokenWithoutRefreshGrant(t *testing.T) {
	e := newEnv(t)
	m := e.tokens("norefresh")
	if _, ok := m["refresh_token"]; ok {
		t.Errorf("refresh token issued to a client without the refresh_token grant: %v", m)
	}
	if n := e.store.tokenCount(); n != 1 {
		t.Errorf("%d tokens stored, want 1", n)
	}
}

func TestCodeReplayRevokesFamily(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	c := e.code(authParams("pub", "code_challenge", challenge, "code_challenge_method", "S256"))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {c}, "code_verifier": {verifier}}
	res := e.postAs(TokenPath, "pub", form)
	if res.status != 200 {
		t.Fatalf("first redemption: %d %s", res.status, res.body)
	}
	m := res.json(t)
	at, rt := m["access_token"].(string), m["refresh_token"].(string)
	if !e.active(at) || !e.active(rt) {
		t.Fatal("fresh tokens inactive")
	}
	wantError(t, e.postAs(TokenPath, "pub", form), 400, "invalid_grant")
	if e.active(at) || e.active(rt) {
		t.Error("tokens from a replayed code are still active")
	}
	warns := e.logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warns) != 1 || warns[0].ContextMap()["client_id"] != "pub" || warns[0].ContextMap()["family"] == "" {
		t.Errorf("warnings %v", warns)
	}
}

// A replay that overtakes the winning redemption, before the winner has
// stored its tokens, leaves the winner with nothing: its tokens are refused
// by the family's revoked marker, so no token of the grant ever validates.
func TestCodeReplayRacingTheWinner(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	c := e.code(authParams("pub", "code_challenge", challenge, "code_challenge_method", "S256"))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {c}, "code_verifier": {verifier}}

	entered, replayed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.store.mu.Lock()
	// The winner, having consumed the code, waits for the replay before it
	// stores its tokens.
	e.store.beforeInsert = func() { once.Do(func() { close(entered); <-replayed }) }
	e.store.mu.Unlock()
	winner := make(chan result, 1)
	go func() { winner <- e.postAs(TokenPath, "pub", form) }()
	<-entered
	// The replay loses and revokes a family that has no tokens yet.
	wantError(t, e.postAs(TokenPath, "pub", form), 400, "invalid_grant")
	close(replayed)
	wantError(t, <-winner, 400, "invalid_grant")
	e.store.mu.Lock()
	n := len(e.store.tokens)
	e.store.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d tokens of the revoked grant were stored", n)
	}
}

func TestConcurrentCodeRedemption(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	c := e.code(authParams("pub", "code_challenge", challenge, "code_challenge_method", "S256"))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {c}, "code_verifier": {verifier}, "client_id": {"pub"}}
	const n = 10
	statuses := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest(http.MethodPost, e.ts.URL+TokenPath, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := e.ts.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		switch s {
		case 200:
			ok++
		case 400:
		default:
			t.Errorf("status %d", s)
		}
	}
	if ok != 1 {
		t.Errorf("%d redemptions succeeded, want exactly 1 (%v)", ok, statuses)
	}
	if n := len(e.logs.FilterMessage("authorization code replayed, revoking its grant").All()); n != 9 {
		t.Errorf("%d replay warnings, want 9", n)
	}
}

func TestRefreshRotationAndReplay(t *testing.T) {
	e := newEnv(t)
	m := e.tokens("conf", "scope", "read write")
	at1, rt1 := m["access_token"].(string), m["refresh_token"].(string)

	res := e.post(TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}}, "conf", confSecret)
	if res.status != 200 {
		t.Fatalf("refresh: %d %s", res.status, res.body)
	}
	m2 := res.json(t)
	at2, rt2 := m2["access_token"].(string), m2["refresh_token"].(string)
	if rt2 == "" || rt2 == rt1 || at2 == at1 || m2["scope"] != "read write" {
		t.Fatalf("refresh response %v", m2)
	}
	if e.active(rt1) {
		t.Error("rotated refresh token still active")
	}
	if !e.active(at2) || !e.active(rt2) || !e.active(at1) {
		t.Error("tokens of the live grant inactive")
	}
	// Replay of the rotated token revokes the whole family.
	wantError(t, e.post(TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}}, "conf", confSecret), 400, "invalid_grant")
	for _, tok := range []string{at1, at2, rt2} {
		if e.active(tok) {
			t.Error("token of a replayed family still active")
		}
	}
	wantError(t, e.post(TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}}, "conf", confSecret), 400, "invalid_grant")
	warns := e.logs.FilterMessage("refresh token replayed, revoking its grant").All()
	if len(warns) != 1 || warns[0].Level != zapcore.WarnLevel || warns[0].ContextMap()["family"] == "" {
		t.Errorf("replay warnings %v", warns)
	}
}

func TestRefreshScope(t *testing.T) {
	e := newEnv(t)
	m := e.tokens("conf", "scope", "read write")
	rt := m["refresh_token"].(string)
	refresh := func(scope, client string) result {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		if scope != "" {
			form.Set("scope", scope)
		}
		return e.postAs(TokenPath, client, form)
	}
	// Widening or another client fails without burning the token.
	wantError(t, refresh("read write admin", "conf"), 400, "invalid_scope")
	wantError(t, refresh("bogus", "conf"), 400, "invalid_scope")
	wantError(t, refresh("", "multi"), 400, "invalid_grant")
	wantError(t, refresh("", "pub"), 400, "invalid_grant")
	// Narrowing: the access token gets less, the refresh token keeps all.
	res := refresh("read", "conf")
	if res.status != 200 {
		t.Fatalf("narrowing: %d %s", res.status, res.body)
	}
	m2 := res.json(t)
	if m2["scope"] != "read" {
		t.Errorf("scope %v", m2["scope"])
	}
	if s := e.introspect(m2["access_token"].(string))["scope"]; s != "read" {
		t.Errorf("access token scope %v", s)
	}
	if s := e.introspect(m2["refresh_token"].(string))["scope"]; s != "read write" {
		t.Errorf("new refresh token scope %v, want the original", s)
	}
	// The original scope is still available with the new refresh token.
	rt = m2["refresh_token"].(string)
	if res := refresh("write read", "conf"); res.status != 200 {
		t.Errorf("full scope again: %d %s", res.status, res.body)
	}
}

func TestRefreshExpired(t *testing.T) {
	e := newEnv(t)
	rt := e.tokens("conf")["refresh_token"].(string)
	e.clock.Advance(DefaultRefreshTokenLifetime)
	wantError(t, e.post(TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "conf", confSecret), 400, "invalid_grant")
}

func TestClientCredentialsGrant(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AccessTokenLifetime = 5 * time.Minute })
	res := e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}}, "svc", svcSecret)
	if res.status != 200 {
		t.Fatalf("%d %s", res.status, res.body)
	}
	m := res.json(t)
	if _, ok := m["refresh_token"]; ok {
		t.Error("client_credentials issued a refresh token")
	}
	if m["scope"] != "svc.read svc.write" || m["expires_in"] != float64(300) {
		t.Errorf("response %v", m)
	}
	i := e.introspect(m["access_token"].(string))
	if _, ok := i["sub"]; ok || i["client_id"] != "svc" {
		t.Errorf("introspection %v", i)
	}
	res = e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {svcSecret}, "scope": {"svc.write"}})
	if m := res.json(t); res.status != 200 || m["scope"] != "svc.write" {
		t.Errorf("narrow scope: %d %v", res.status, m)
	}
	// A client_credentials grant has no family to revoke together.
	e.store.mu.Lock()
	for _, ft := range e.store.tokens {
		if ft.t.Family != "" {
			t.Errorf("client_credentials token with family %q", ft.t.Family)
		}
	}
	e.store.mu.Unlock()
}

func TestStoreOutage(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	code := e.code(authParams("pub", "code_challenge", challenge, "code_challenge_method", "S256"))
	m := e.tokens("conf")
	at, rt := m["access_token"].(string), m["refresh_token"].(string)

	codeForm := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "client_id": {"pub"}}
	type call struct {
		name string
		fail []string
		do   func() result
	}
	calls := []call{
		{"code redemption", []string{"ConsumeCode"}, func() result { return e.post(TokenPath, codeForm) }},
		{"token insert", []string{"InsertTokens"}, func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}}, "svc", svcSecret)
		}},
		{"refresh lookup", []string{"LookupToken"}, func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "conf", confSecret)
		}},
		{"refresh consume", []string{"ConsumeRefreshToken"}, func() result {
			return e.post(TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "conf", confSecret)
		}},
		{"revoke lookup", []string{"LookupToken"}, func() result { return e.post(RevokePath, url.Values{"token": {at}}, "conf", confSecret) }},
		{"revoke", []string{"RevokeToken"}, func() result { return e.post(RevokePath, url.Values{"token": {at}}, "conf", confSecret) }},
		{"revoke family", []string{"RevokeFamily"}, func() result { return e.post(RevokePath, url.Values{"token": {rt}}, "conf", confSecret) }},
		{"introspect", []string{"*"}, func() result { return e.post(IntrospectPath, url.Values{"token": {at}}, "conf", confSecret) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			e.store.setFail(c.fail...)
			defer e.store.setFail()
			wantError(t, c.do(), http.StatusServiceUnavailable, "temporarily_unavailable")
		})
	}
	// Nothing was lost: with the store back, everything works.
	if res := e.post(TokenPath, codeForm); res.status != 200 {
		t.Errorf("code after outage: %d %s", res.status, res.body)
	}
	if !e.active(at) || !e.active(rt) {
		t.Error("tokens lost in the outage")
	}

	// Code replay while RevokeFamily fails: 503, not a silent invalid_grant.
	e.store.setFail("RevokeFamily")
	wantError(t, e.post(TokenPath, codeForm), http.StatusServiceUnavailable, "temporarily_unavailable")
	e.store.setFail()
	wantError(t, e.post(TokenPath, codeForm), 400, "invalid_grant")
}

func TestStoreOutageAuthorize(t *testing.T) {
	e := newEnv(t)
	e.store.setFail("*")
	res := e.authorize(authParams("skip", "state", "s"), testUser)
	wantRedirectError(t, res, skipRedirect, "temporarily_unavailable", "s")

	e.store.setFail()
	page := e.authorize(authParams("conf", "state", "t"), testUser)
	form := hiddenFields(page.body)
	form.Set("decision", "approve")
	e.store.setFail("*")
	res = e.consent(form, testUser)
	wantRedirectError(t, res, confRedirect, "temporarily_unavailable", "t")
	if res.status != http.StatusSeeOther {
		t.Errorf("status %d", res.status)
	}
	if n := len(e.logs.FilterLevelExact(zapcore.ErrorLevel).All()); n != 2 {
		t.Errorf("%d error logs, want 2", n)
	}
}

func TestStoreTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.StoreTimeout = time.Second })
	e.store.setBlock(true)
	start := time.Now()
	wantError(t, e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}}, "svc", svcSecret), http.StatusServiceUnavailable, "temporarily_unavailable")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

// contractBreaker returns ErrConsumed without the record, which the
// contract forbids; the issuer must still answer invalid_grant.
type contractBreaker struct{ *fakeStore }

func (contractBreaker) ConsumeCode(context.Context, string) (*stores.Code, error) {
	return nil, stores.ErrConsumed
}

func (contractBreaker) ConsumeRefreshToken(context.Context, string) (*stores.Token, error) {
	return nil, stores.ErrConsumed
}

func TestStoreContractViolation(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		s := contractBreaker{c.Codes.(*fakeStore)}
		c.Codes, c.Tokens = s, s
	})
	c, _ := token.New(token.CodePrefix)
	wantError(t, e.post(TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {c}}, "conf", confSecret), 400, "invalid_grant")
	r, _ := token.New(token.RefreshPrefix)
	wantError(t, e.post(TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r}}, "conf", confSecret), 400, "invalid_grant")
}
