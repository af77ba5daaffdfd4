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

	res := e.post(IntrospectPath, url.Values{"token": {at}, "token_type_hint": {"refresh_token"}}, "rs", rsSecret)
	if res.status != 200 || res.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, Cache-Control %q", res.status, res.header.Get("Cache-Control"))
	}
	got := res.json(t)
	want := map[string]any{
		"active": true, "scope": "read", "client_id": "pub", "sub": testUser, "token_type": "Bearer",
		"exp": float64(e.clock.Now().Add(DefaultAccessTokenLifetime).Unix()), "iat": float64(e.clock.Now().Unix()),
		"iss": "https://auth.example", "aud": "https://auth.example", // the default audience (RFC 8707)
	}
	if len(got) != len(want) {
		t.Errorf("introspection %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	crt := e.tokens("conf", "scope", "read")["refresh_token"].(string)
	if r := e.introspect(crt); r["active"] != true || r["token_type"] != "refresh_token" || r["client_id"] != "conf" {
		t.Errorf("refresh token introspection %v", r)
	}
	if r := e.introspect(rt); r["active"] != true {
		t.Errorf("public client's refresh token %v", r)
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

// TestIntrospectAuthorization checks RFC 7662 §4: a client sees its own
// tokens; another client's access tokens only with the introspect flag;
// refresh tokens only their own client, even with the flag. Everything
// else is indistinguishable from an unknown token.
func TestIntrospectAuthorization(t *testing.T) {
	e := newEnv(t)
	conf := e.tokens("conf", "scope", "read")
	pub := e.tokens("pub", "scope", "read")
	res := e.post(TokenPath, url.Values{"grant_type": {"client_credentials"}}, "svc", svcSecret)
	svc := res.json(t)
	cat, crt := conf["access_token"].(string), conf["refresh_token"].(string)
	pat, prt := pub["access_token"].(string), pub["refresh_token"].(string)
	sat := svc["access_token"].(string)

	cases := []struct {
		asker, tok string
		active     bool
	}{
		{"conf", cat, true},  // own access token
		{"conf", crt, true},  // own refresh token
		{"svc", sat, true},   // own client_credentials token
		{"conf", pat, false}, // another client's access token
		{"conf", prt, false}, // another client's refresh token
		{"conf", sat, false},
		{"svc", cat, false},
		{"multi", cat, false},
		{"rs", cat, true}, // a resource server sees access tokens
		{"rs", pat, true},
		{"rs", sat, true},
		{"rs", crt, false}, // but never another client's refresh token
		{"rs", prt, false},
	}
	for _, tc := range cases {
		res := e.post(IntrospectPath, url.Values{"token": {tc.tok}}, tc.asker, secrets[tc.asker])
		if res.status != 200 {
			t.Errorf("%s: status %d %s", tc.asker, res.status, res.body)
			continue
		}
		m := res.json(t)
		if tc.active && m["active"] != true {
			t.Errorf("%s introspecting a %s token: %v, want active", tc.asker, tc.tok[:4], m)
		}
		if !tc.active && (len(m) != 1 || m["active"] != false) {
			t.Errorf("%s introspecting a %s token: %v, want only {\"active\":false}", tc.asker, tc.tok[:4], m)
		}
	}
}
