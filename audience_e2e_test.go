package oauth2

// End-to-end tests of resource indicators (RFC 8707) with opaque access
// tokens through a real Caddy: the resource parameter is checked as for
// JWTs, the granted audience is returned by introspection and enforced by
// a guard with an audience, and a refresh cannot widen it.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const (
	audAuthBase  = "http://localhost:21740"
	audAPIBase   = "http://localhost:21741"
	audAdminPort = 21749
	audDefault   = "https://api.example"
	audA         = "https://api-a.example"
	audB         = "https://api-b.example"
)

// audienceConfig issues opaque tokens; /a and /b are guarded for the two
// APIs, / by a guard without an audience.
func audienceConfig(upstreamAddr, store string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	default_bind 127.0.0.1
	http_port 21740
	https_port 21742
	grace_period 1ns
	skip_install_trust
	oauth2 {
		issuer %s
		access_token_format opaque
		audience %s
		access_token_store %s
		authorization_code_store %s
		client svc {
			secret_hash %s
			redirect_uri http://127.0.0.1:9999/cb
			grant_types authorization_code refresh_token client_credentials
			scopes read
			resources %s %s
			introspect
			skip_consent
		}
	}
}
%s {
	handle /oauth2/authorize {
		basic_auth {
			alice %s
		}
		oauth2_server
	}
	oauth2_server
}
%s {
	handle /a {
		oauth2_guard read {
			audience %s
		}
		reverse_proxy %s
	}
	handle /b {
		oauth2_guard read {
			audience %s
		}
		reverse_proxy %s
	}
	handle {
		oauth2_guard read
		reverse_proxy %s
	}
}
`, audAdminPort, audAuthBase, audDefault, store, store, secretHash, audA, audB, audAuthBase, aliceHash,
		audAPIBase, audA, upstreamAddr, audB, upstreamAddr, upstreamAddr)
}

// audPost posts form to the authorization server as the client svc.
func audPost(t *testing.T, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, audAuthBase+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// audGuard asks the guard at path and checks the status (and the RFC 6750
// challenge of a 401).
func audGuard(t *testing.T, what, path, bearer string, status int) {
	t.Helper()
	resp, body := get(t, nil, audAPIBase+path, bearer)
	if resp.StatusCode != status {
		t.Fatalf("%s: guard at %s answered %d, want %d: %s", what, path, resp.StatusCode, status, body)
	}
	if status == http.StatusUnauthorized && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("%s: challenge %q lacks invalid_token", what, resp.Header.Get("WWW-Authenticate"))
	}
}

// wantAud introspects raw and checks its "aud".
func wantAud(t *testing.T, what, raw, aud string) {
	t.Helper()
	st, body := audPost(t, "/oauth2/introspect", url.Values{"token": {raw}})
	if st != 200 || body["active"] != true || body["aud"] != aud {
		t.Fatalf("%s: introspection %d %v, want active with aud %s", what, st, body, aud)
	}
}

// TestOpaqueTokenAudience runs on the cache store and on SQLite, where the
// audiences are columns of the schema.
func TestOpaqueTokenAudience(t *testing.T) {
	for name, store := range map[string]string{
		"cache":  "cache",
		"sqlite": fmt.Sprintf("sql {\n\t\t\tdialect sqlite\n\t\t\tdsn %q\n\t\t\tcreate_schema\n\t\t}", filepath.Join(t.TempDir(), "aud.db")),
	} {
		t.Run(name, func(t *testing.T) { runOpaqueTokenAudience(t, store) })
	}
}

func runOpaqueTokenAudience(t *testing.T, store string) {
	up := newUpstream(t)
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: audAdminPort})
	tester.InitServer(audienceConfig(up.URL, store), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	ctx := context.Background()
	cc := func(resource ...string) *clientcredentials.Config {
		return &clientcredentials.Config{ClientID: "svc", ClientSecret: "s3cret", TokenURL: audAuthBase + "/oauth2/token",
			Scopes: []string{"read"}, AuthStyle: oauth2.AuthStyleInHeader, EndpointParams: url.Values{"resource": resource}}
	}

	// RFC 8707 §2: an unregistered or malformed resource is refused, as
	// for JWTs.
	for _, res := range []string{"https://evil.example", "not a uri", "https://api-a.example#frag", "/relative"} {
		_, err := cc(res).Token(ctx)
		if code := retrieveErrorCode(err); code != "invalid_target" {
			t.Fatalf("resource %q: %v, want 400 invalid_target", res, err)
		}
		st, body := audPost(t, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "resource": {res}})
		if st != 400 || body["error"] != "invalid_target" {
			t.Fatalf("resource %q: %d %v, want 400 invalid_target", res, st, body)
		}
	}

	// A registered resource is the token's audience: introspection shows
	// it, its API's guard admits it, another API's guard refuses it, and
	// so does the guard of the default audience.
	forA, err := cc(audA).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantAud(t, "token for api-a", forA.AccessToken, audA)
	audGuard(t, "token for api-a", "/a", forA.AccessToken, http.StatusOK)
	up.last(t)
	audGuard(t, "token for api-a", "/b", forA.AccessToken, http.StatusUnauthorized)
	audGuard(t, "token for api-a", "/", forA.AccessToken, http.StatusUnauthorized)

	// Without a resource, the default audience: the guard without an
	// audience admits it, as before; the APIs' guards refuse it.
	plain, err := cc().Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantAud(t, "token without a resource", plain.AccessToken, audDefault)
	audGuard(t, "token without a resource", "/", plain.AccessToken, http.StatusOK)
	up.last(t)
	audGuard(t, "token without a resource", "/a", plain.AccessToken, http.StatusUnauthorized)

	// RFC 8707 §2.2: a grant for api-a cannot refresh into api-b, nor into
	// both; it refreshes into api-a, with or without naming it.
	cfg := &oauth2.Config{ClientID: "svc", ClientSecret: "s3cret", RedirectURL: "http://127.0.0.1:9999/cb", Scopes: []string{"read"},
		Endpoint: oauth2.Endpoint{AuthURL: audAuthBase + "/oauth2/authorize", TokenURL: audAuthBase + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	verifier := oauth2.GenerateVerifier()
	code := authorize(t, cfg, oauth2.S256ChallengeOption(verifier))
	first, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", audA))
	if err != nil {
		t.Fatal(err)
	}
	wantAud(t, "code grant for api-a", first.AccessToken, audA)
	audGuard(t, "code grant for api-a", "/b", first.AccessToken, http.StatusUnauthorized)
	for _, res := range [][]string{{audB}, {audA, audB}, {"https://evil.example"}} {
		st, body := audPost(t, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}, "resource": res})
		if st != 400 || body["error"] != "invalid_target" {
			t.Fatalf("refreshing a grant for api-a into %v: %d %v, want 400 invalid_target", res, st, body)
		}
	}
	// The refused refreshes did not burn the refresh token.
	st, body := audPost(t, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}})
	if st != 200 {
		t.Fatalf("refresh without a resource: %d %v", st, body)
	}
	second, _ := body["access_token"].(string)
	wantAud(t, "refreshed grant", second, audA)
	audGuard(t, "refreshed grant", "/a", second, http.StatusOK)
	up.last(t)
	audGuard(t, "refreshed grant", "/b", second, http.StatusUnauthorized)
	rt, _ := body["refresh_token"].(string)
	if st, body := audPost(t, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "resource": {audB}}); st != 400 || body["error"] != "invalid_target" {
		t.Fatalf("the rotated refresh token widened into api-b: %d %v", st, body)
	}
	if st, body := audPost(t, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "resource": {audA}}); st != 200 {
		t.Fatalf("refresh naming the granted resource: %d %v", st, body)
	}
}
