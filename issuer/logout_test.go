package issuer

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/stores"
)

// idTokenHint signs an ID token as the server does, with claims changed
// by mod.
func idTokenHint(t *testing.T, ring *jwt.Ring, e *env, sid string, mod func(map[string]any)) string {
	t.Helper()
	now := e.clock.Now()
	c := map[string]any{"iss": e.ts.URL, "sub": testUser, "aud": "conf", "azp": "conf", "sid": sid,
		"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()} // expired: §4 accepts it
	if mod != nil {
		mod(c)
	}
	raw, err := ring.SignAs("RS256", c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (e *env) logout(method string, q url.Values) result {
	e.t.Helper()
	var req *http.Request
	if method == http.MethodPost {
		req, _ = http.NewRequest(method, e.ts.URL+LogoutPath, strings.NewReader(q.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req, _ = http.NewRequest(method, e.ts.URL+LogoutPath+"?"+q.Encode(), nil)
	}
	return e.do(req)
}

// TestLogout checks RP-initiated logout (RP-Initiated Logout 1.0) over
// HTTP: an id_token_hint revokes its grant and the user goes back to a
// registered URI with state; every refusal is a page, never a redirect.
func TestLogout(t *testing.T) {
	mod, ring := withRPOIDC(t, nil)
	e := newEnv(t, mod)
	grant := func() (access, refresh, family string) {
		tok := e.tokens("conf", "scope", "openid read", "nonce", "n", "redirect_uri", confRedirect)
		access, refresh = tok["access_token"].(string), tok["refresh_token"].(string)
		rec, err := e.store.LookupToken(context.Background(), stores.AccessToken, e.hasher.Key(access))
		if err != nil {
			t.Fatal(err)
		}
		if rec.OIDC != nil && rec.OIDC.SessionID != rec.Family {
			t.Errorf("the token's sid %+v is not its family %s", rec.OIDC, rec.Family)
		}
		return access, refresh, rec.Family
	}
	refreshes := func(refresh string) bool {
		return e.postAs(TokenPath, "conf", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}).status == http.StatusOK
	}

	access, refresh, family := grant()
	other, otherRefresh, _ := grant() // another session of the same user and client
	for _, tc := range []struct {
		name string
		q    url.Values
	}{
		{"unregistered post_logout_redirect_uri", url.Values{"id_token_hint": {idTokenHint(t, ring, e, family, nil)},
			"post_logout_redirect_uri": {"https://evil.example/cb"}, "state": {"s"}}},
		{"post_logout_redirect_uri of another client", url.Values{"client_id": {"pub"}, "post_logout_redirect_uri": {logoutRedirect}}},
		{"post_logout_redirect_uri without a client", url.Values{"post_logout_redirect_uri": {logoutRedirect}}},
		{"hint of another issuer", url.Values{"id_token_hint": {idTokenHint(t, ring, e, family, func(c map[string]any) { c["iss"] = "https://evil.example" })}}},
		{"hint for two audiences", url.Values{"id_token_hint": {idTokenHint(t, ring, e, family, func(c map[string]any) { c["aud"] = []string{"conf", "pub"}; delete(c, "azp") })}}},
		{"hint whose azp differs", url.Values{"id_token_hint": {idTokenHint(t, ring, e, family, func(c map[string]any) { c["azp"] = "pub" })}}},
		{"tampered hint", url.Values{"id_token_hint": {tamper(idTokenHint(t, ring, e, family, nil))}}},
		{"not a JWT", url.Values{"id_token_hint": {"garbage"}}},
		{"client_id is not the hint's audience", url.Values{"id_token_hint": {idTokenHint(t, ring, e, family, nil)}, "client_id": {"pub"}}},
		{"unknown client", url.Values{"client_id": {"nobody"}}},
		{"repeated state", url.Values{"client_id": {"conf"}, "state": {"a", "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantPage(t, e.logout(http.MethodGet, tc.q), http.StatusBadRequest)
		})
	}
	// An ID token signed by another key.
	_, otherRing := withRPOIDC(t, nil)
	wantPage(t, e.logout(http.MethodGet, url.Values{"id_token_hint": {idTokenHint(t, otherRing, e, family, nil)}}), http.StatusBadRequest)
	if !e.active(access) || !refreshes(refresh) {
		t.Fatal("a refused logout revoked the grant")
	}
	_, refresh, family = grant()

	res := e.logout(http.MethodGet, url.Values{"id_token_hint": {idTokenHint(t, ring, e, family, nil)},
		"post_logout_redirect_uri": {logoutRedirect}, "state": {"bye state"}})
	if res.status != http.StatusFound || res.header.Get("Location") != logoutRedirect+"?state=bye+state" {
		t.Fatalf("logout: %d Location %q", res.status, res.header.Get("Location"))
	}
	if refreshes(refresh) {
		t.Error("the logged-out grant still refreshes")
	}
	if !e.active(other) || !refreshes(otherRefresh) {
		t.Error("logout revoked another session of the same user")
	}

	// POST, the signed-out page, and a hint given again: nothing left to
	// revoke, still a page.
	_, refresh, family = grant()
	res = e.logout(http.MethodPost, url.Values{"id_token_hint": {idTokenHint(t, ring, e, family, nil)}})
	wantPage(t, res, http.StatusOK)
	if !strings.Contains(res.body, "Signed out") || !strings.Contains(res.body, "no longer has access") {
		t.Errorf("signed-out page: %.300s", res.body)
	}
	if refreshes(refresh) {
		t.Error("POST logout did not revoke")
	}
	res = e.logout(http.MethodPost, url.Values{"client_id": {"conf"}, "post_logout_redirect_uri": {logoutRedirect}})
	if res.status != http.StatusSeeOther || res.header.Get("Location") != logoutRedirect {
		t.Errorf("POST logout with client_id: %d %q", res.status, res.header.Get("Location"))
	}
	// Without a hint nothing is revoked (§6): just the page.
	_, refresh, _ = grant()
	wantPage(t, e.logout(http.MethodGet, nil), http.StatusOK)
	if !refreshes(refresh) {
		t.Error("a logout without id_token_hint revoked something")
	}
	if res := e.logout(http.MethodPut, nil); res.status != http.StatusMethodNotAllowed || res.header.Get("Allow") != "GET, POST" {
		t.Errorf("PUT: %d %q", res.status, res.header.Get("Allow"))
	}
	// A store outage is a 503 page, not a pass.
	_, _, family = grant()
	e.store.setFail("RevokeFamily")
	wantPage(t, e.logout(http.MethodGet, url.Values{"id_token_hint": {idTokenHint(t, ring, e, family, nil)},
		"post_logout_redirect_uri": {logoutRedirect}}), http.StatusServiceUnavailable)
	e.store.setFail()

	// The metadata names the endpoint.
	if m := e.do(mustGet(t, e.ts.URL+MetadataPath)).json(t); m["end_session_endpoint"] != e.ts.URL+LogoutPath {
		t.Errorf("end_session_endpoint = %v", m["end_session_endpoint"])
	}
}

// TestLogoutAccessTokenHint checks that a JWT access token is no ID token.
func TestLogoutAccessTokenHint(t *testing.T) {
	mod, ring := withRPOIDC(t, nil)
	e := newEnv(t, mod, func(c *Config) { c.JWT = ring })
	tok := e.tokens("conf", "scope", "openid read", "redirect_uri", confRedirect)
	wantPage(t, e.logout(http.MethodGet, url.Values{"id_token_hint": {tok["access_token"].(string)}}), http.StatusBadRequest)
}

func tamper(raw string) string {
	i := strings.LastIndexByte(raw, '.')
	c := byte('A')
	if raw[i+1] == 'A' {
		c = 'B'
	}
	return raw[:i+1] + string(c) + raw[i+2:]
}

// TestLogoutRegisteredClient checks post_logout_redirect_uris in RFC 7591
// metadata: validated like redirect URIs, kept with the record, shown in
// the client's view, and honoured by the logout endpoint.
func TestLogoutRegisteredClient(t *testing.T) {
	clk := newClock()
	var g *Registry
	mod, _ := withRPOIDC(t, nil)
	e := newEnvClock(t, clk, mod, withRegistry(t, &g, clk, nil))
	for body, field := range map[string]string{
		`{"redirect_uris":["https://rp.example/cb"],"post_logout_redirect_uris":["http://rp.example/bye"]}`: "post_logout_redirect_uris",
		`{"redirect_uris":["https://rp.example/cb"],"post_logout_redirect_uris":"https://rp.example/bye"}`:  "post_logout_redirect_uris",
	} {
		m, me := ParseClientMetadata([]byte(body), false)
		if me == nil {
			_, _, err := g.NewRecord(m, stores.RegisteredDynamically, 0)
			me, _ = err.(*MetadataError)
		}
		if me == nil || me.Field != field || me.Code != ErrCodeInvalidClientMetadata {
			t.Errorf("%s: %v, want invalid_client_metadata on %s", body, me, field)
		}
	}
	m, me := ParseClientMetadata([]byte(`{"redirect_uris":["https://rp.example/cb"],"scope":"openid","token_endpoint_auth_method":"none",
		"post_logout_redirect_uris":["https://rp.example/bye"]}`), false)
	if me != nil {
		t.Fatal(me)
	}
	rc, _, err := g.NewRecord(m, stores.RegisteredDynamically, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Create(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	if v := toString(ClientView(rc, false)["post_logout_redirect_uris"]); v != `["https://rp.example/bye"]` {
		t.Errorf("client view: post_logout_redirect_uris = %s", v)
	}
	res := e.logout(http.MethodGet, url.Values{"client_id": {rc.ID}, "post_logout_redirect_uri": {"https://rp.example/bye"}, "state": {"s"}})
	if res.status != http.StatusFound || res.header.Get("Location") != "https://rp.example/bye?state=s" {
		t.Errorf("logout of a registered client: %d %q", res.status, res.header.Get("Location"))
	}
	wantPage(t, e.logout(http.MethodGet, url.Values{"client_id": {rc.ID}, "post_logout_redirect_uri": {logoutRedirect}}), http.StatusBadRequest)
}
