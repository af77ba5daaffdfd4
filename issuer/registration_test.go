package issuer

import (
	"net/http"
	"net/url"
	"testing"
)

// TestGrantsFollowRegistration issues grants on one server, then serves them
// from a second server over the same store with changed client
// registrations, as a configuration reload does: conf loses write, multi is
// removed.
func TestGrantsFollowRegistration(t *testing.T) {
	e := newEnv(t)
	rw := e.tokens("conf", "scope", "read write")
	wOnly := e.tokens("conf", "scope", "write")
	multi := e.tokens("multi", "redirect_uri", "https://m.example/a")
	verifier, challenge := pkce()
	code := e.code(authParams("conf", "scope", "read write", "code_challenge", challenge, "code_challenge_method", "S256"))
	mVerifier, mChallenge := pkce()
	mCode := e.code(authParams("multi", "redirect_uri", "https://m.example/a", "code_challenge", mChallenge, "code_challenge_method", "S256"))

	r := newEnv(t, func(c *Config) {
		c.Codes, c.Tokens, c.Now = e.store, e.store, e.clock.Now
		c.Clients["conf"].Scopes = []string{"read", "admin"}
		delete(c.Clients, "multi")
	})
	r.store = e.store
	refresh := func(client, rt, scope string) result {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		if scope != "" {
			form.Set("scope", scope)
		}
		return r.postAs(TokenPath, client, form)
	}

	// Asking for a dropped scope is refused and does not burn the token.
	wantError(t, refresh("conf", rw["refresh_token"].(string), "write"), http.StatusBadRequest, "invalid_scope")
	wantError(t, refresh("conf", rw["refresh_token"].(string), "read write"), http.StatusBadRequest, "invalid_scope")
	res := refresh("conf", rw["refresh_token"].(string), "")
	if m := res.json(t); res.status != 200 || m["scope"] != "read" {
		t.Fatalf("refresh after write was dropped: %d %v, want scope read", res.status, m)
	}
	rt2 := res.json(t)["refresh_token"].(string)
	if s := r.introspect(rt2)["scope"]; s != "read" {
		t.Errorf("rotated refresh token keeps scope %v, want read", s)
	}
	// The old access token is reported with what is left of its scope.
	if s := r.introspect(rw["access_token"].(string))["scope"]; s != "read" {
		t.Errorf("old access token introspected with scope %v, want read", s)
	}
	// Nothing left of a write-only grant.
	wantError(t, refresh("conf", wOnly["refresh_token"].(string), ""), http.StatusBadRequest, "invalid_grant")
	if r.active(wOnly["access_token"].(string)) {
		t.Error("a write-only access token is still active after write was dropped")
	}

	// A code issued before the change is redeemed for what is left.
	res = r.postAs(TokenPath, "conf", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}})
	if m := res.json(t); res.status != 200 || m["scope"] != "read" {
		t.Errorf("code redeemed after write was dropped: %d %v, want scope read", res.status, m)
	}

	// A removed client can neither refresh nor redeem, and its tokens are
	// inactive.
	wantError(t, r.post(TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {multi["refresh_token"].(string)}}, "multi", multiSecret),
		http.StatusUnauthorized, "invalid_client")
	wantError(t, r.post(TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {mCode}, "code_verifier": {mVerifier},
		"redirect_uri": {"https://m.example/a"}}, "multi", multiSecret), http.StatusUnauthorized, "invalid_client")
	if r.active(multi["access_token"].(string)) {
		t.Error("a removed client's access token is still active")
	}
}
