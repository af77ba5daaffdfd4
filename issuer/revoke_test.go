package issuer

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/tokengate/caddy-oauth2/token"
)

func TestRevokeAccessToken(t *testing.T) {
	e := newEnv(t)
	m := e.tokens("conf")
	at, rt := m["access_token"].(string), m["refresh_token"].(string)
	res := e.post(RevokePath, url.Values{"token": {at}, "token_type_hint": {"access_token"}}, "conf", confSecret)
	if res.status != 200 || res.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, Cache-Control %q", res.status, res.header.Get("Cache-Control"))
	}
	if e.active(at) {
		t.Error("revoked access token still active")
	}
	if !e.active(rt) {
		t.Error("revoking an access token revoked its refresh token")
	}
	// Revoking again is fine (RFC 7009 §2.2).
	if res := e.post(RevokePath, url.Values{"token": {at}}, "conf", confSecret); res.status != 200 {
		t.Errorf("second revocation: %d", res.status)
	}
}

func TestRevokeRefreshTokenRevokesGrant(t *testing.T) {
	e := newEnv(t)
	m := e.tokens("pub")
	at, rt := m["access_token"].(string), m["refresh_token"].(string)
	other := e.tokens("pub")
	// Public clients identify with client_id; a wrong hint is ignored.
	res := e.post(RevokePath, url.Values{"token": {rt}, "token_type_hint": {"access_token"}, "client_id": {"pub"}})
	if res.status != 200 {
		t.Fatalf("status %d %s", res.status, res.body)
	}
	if e.active(rt) || e.active(at) {
		t.Error("tokens of the revoked grant still active (RFC 7009 §2.1)")
	}
	if !e.active(other["access_token"].(string)) || !e.active(other["refresh_token"].(string)) {
		t.Error("another grant was revoked")
	}
	wantError(t, e.postAs(TokenPath, "pub", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}), 400, "invalid_grant")
}

func TestRevokeNoEffect(t *testing.T) {
	e := newEnv(t)
	m := e.tokens("conf")
	at, rt := m["access_token"].(string), m["refresh_token"].(string)
	unknown, _ := token.New(token.AccessPrefix)
	code := e.code(authParams("conf"))
	for _, tc := range []struct {
		name   string
		client string
		form   url.Values
	}{
		{"other client's access token", "multi", url.Values{"token": {at}}},
		{"other client's refresh token", "multi", url.Values{"token": {rt}}},
		{"public client, other's token", "pub", url.Values{"token": {rt}}},
		{"unknown token", "conf", url.Values{"token": {unknown}}},
		{"malformed token", "conf", url.Values{"token": {"garbage"}}},
		{"authorization code", "conf", url.Values{"token": {code}}},
		{"unsupported hint", "conf", url.Values{"token": {unknown}, "token_type_hint": {"id_token"}}},
	} {
		res := e.postAs(RevokePath, tc.client, tc.form)
		if res.status != 200 {
			t.Errorf("%s: status %d %s", tc.name, res.status, res.body)
		}
	}
	if !e.active(at) || !e.active(rt) {
		t.Error("tokens revoked by a request that should have had no effect")
	}
}

func TestRevokeErrors(t *testing.T) {
	e := newEnv(t)
	at := e.tokens("conf")["access_token"].(string)
	wantError(t, e.post(RevokePath, url.Values{}, "conf", confSecret), 400, "invalid_request")
	wantError(t, e.post(RevokePath, url.Values{"token": {at, at}}, "conf", confSecret), 400, "invalid_request")
	wantError(t, e.post(RevokePath, url.Values{"token": {at}}, "conf", "wrong"), 401, "invalid_client")
	wantError(t, e.post(RevokePath, url.Values{"token": {at}}), 401, "invalid_client")
	wantError(t, e.post(RevokePath, url.Values{"token": {at}, "client_id": {"conf"}}), 401, "invalid_client")
	wantError(t, e.post(RevokePath, url.Values{"token": {at}, "client_id": {"nobody"}}), 401, "invalid_client")
	if !e.active(at) {
		t.Error("token revoked by a failed request")
	}
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+RevokePath, nil)
	req.Header.Set("Content-Type", "text/plain")
	wantError(t, e.do(req), 400, "invalid_request")
}
