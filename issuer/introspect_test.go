package issuer

import (
	"net/url"
	"testing"

	"github.com/tokengate/caddy-oauth2/token"
)

func TestIntrospect(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Issuer = "https://auth.example" })
	m := e.tokens("pub", "scope", "read")
	at, rt := m["access_token"].(string), m["refresh_token"].(string)

	res := e.post(IntrospectPath, url.Values{"token": {at}, "token_type_hint": {"refresh_token"}}, "svc", svcSecret)
	if res.status != 200 || res.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, Cache-Control %q", res.status, res.header.Get("Cache-Control"))
	}
	got := res.json(t)
	want := map[string]any{
		"active": true, "scope": "read", "client_id": "pub", "sub": testUser, "token_type": "Bearer",
		"exp": float64(e.clock.Now().Add(DefaultAccessTokenLifetime).Unix()), "iat": float64(e.clock.Now().Unix()),
		"iss": "https://auth.example",
	}
	if len(got) != len(want) {
		t.Errorf("introspection %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if r := e.introspect(rt); r["active"] != true || r["token_type"] != "refresh_token" || r["client_id"] != "pub" {
		t.Errorf("refresh token introspection %v", r)
	}

	// Inactive: only {"active":false}.
	unknown, _ := token.New(token.AccessPrefix)
	code := e.code(authParams("conf"))
	for _, tok := range []string{unknown, "garbage", code, at + "x"} {
		r := e.introspect(tok)
		if len(r) != 1 || r["active"] != false {
			t.Errorf("introspection of junk %v", r)
		}
	}
	e.clock.Advance(DefaultAccessTokenLifetime)
	if r := e.introspect(at); len(r) != 1 || r["active"] != false {
		t.Errorf("expired token %v", r)
	}
}

func TestIntrospectErrors(t *testing.T) {
	e := newEnv(t)
	at := e.tokens("pub")["access_token"].(string)
	// Public clients cannot introspect: their client_id proves nothing.
	wantError(t, e.post(IntrospectPath, url.Values{"token": {at}, "client_id": {"pub"}}), 401, "invalid_client")
	wantError(t, e.post(IntrospectPath, url.Values{"token": {at}}, "pub", ""), 401, "invalid_client")
	wantError(t, e.post(IntrospectPath, url.Values{"token": {at}}), 401, "invalid_client")
	wantError(t, e.post(IntrospectPath, url.Values{"token": {at}}, "conf", "wrong"), 401, "invalid_client")
	wantError(t, e.post(IntrospectPath, url.Values{}, "conf", confSecret), 400, "invalid_request")
	wantError(t, e.post(IntrospectPath, url.Values{"token": {at, at}}, "conf", confSecret), 400, "invalid_request")
}
