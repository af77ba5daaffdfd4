package oauth2

// Grants follow the client's registration across `caddy reload`: a real
// Caddy process (this test binary re-executed, see restart_test.go) issues
// tokens, is reloaded with `caddy reload` into a configuration where a
// client lost a scope and another client is gone, and the token endpoint
// and the guard follow the new registration at once.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	regServer = "http://127.0.0.1:27710"
	regAPI    = "http://127.0.0.1:27711"
	regAdmin  = "127.0.0.1:27719"
	regReturn = "http://127.0.0.1:9999/cb"
)

// registrationConfig is the Caddyfile of the reload test: before the
// reload, app has read and write and gone exists; after it, app has only
// read and gone is removed.
func registrationConfig(store string, after bool) string {
	appScopes, gone := "read write", fmt.Sprintf(`
		client gone {
			secret_hash %s
			redirect_uri %s
			grant_types authorization_code refresh_token client_credentials
			scopes read write
			skip_consent
		}`, secretHash, regReturn)
	if after {
		appScopes, gone = "read", ""
	}
	return fmt.Sprintf(`{
	admin %[1]s
	default_bind 127.0.0.1
	http_port 27710
	https_port 27712
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "registration-test-secret-of-32-bytes-or-more"
		%[2]s
		client app {
			secret_hash %[3]s
			redirect_uri %[4]s
			scopes %[5]s
			skip_consent
		}%[6]s
	}
}
http://127.0.0.1:27710 {
	handle /oauth2/authorize {
		basic_auth {
			alice %[7]s
		}
		oauth2_server
	}
	oauth2_server
}
http://127.0.0.1:27711 {
	oauth2_guard read
	respond "read ok {oauth2.client_id}"
}
http://127.0.0.1:27711/admin {
	oauth2_guard write
	respond "write ok {oauth2.client_id}"
}
`, regAdmin, store, secretHash, regReturn, appScopes, gone, aliceHash)
}

func TestRegistrationReloadCache(t *testing.T) { runRegistrationReload(t, "") }

func TestRegistrationReloadSQLite(t *testing.T) {
	db := filepath.Join(t.TempDir(), "oauth2.db")
	runRegistrationReload(t, fmt.Sprintf(`access_token_store sql {
			dialect sqlite
			dsn %q
			create_schema
		}
		authorization_code_store sql {
			dialect sqlite
			dsn %q
			create_schema
		}`, db, db))
}

func runRegistrationReload(t *testing.T, store string) {
	path := filepath.Join(t.TempDir(), "Caddyfile")
	write := func(after bool) {
		if err := os.WriteFile(path, []byte(registrationConfig(store, after)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(false)
	caddy := startCaddyProcess(t, path, 27710, 27711)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer noRedirect.CloseIdleConnections()

	token := func(client string, form url.Values) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, regServer+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(client, "s3cret")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatalf("token endpoint: %d, body is no JSON: %v", resp.StatusCode, err)
		}
		return resp.StatusCode, m
	}
	code := func(client, scope string) string {
		t.Helper()
		q := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {regReturn}, "scope": {scope}, "state": {"s"}}
		req, _ := http.NewRequest(http.MethodGet, regServer+"/oauth2/authorize?"+q.Encode(), nil)
		req.SetBasicAuth("alice", "alice-password")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("code") == "" {
			t.Fatalf("authorize %s: %d, Location %q\n%s", client, resp.StatusCode, resp.Header.Get("Location"), caddy.log)
		}
		return loc.Query().Get("code")
	}
	redeem := func(client, c string) (int, map[string]any) {
		t.Helper()
		return token(client, url.Values{"grant_type": {"authorization_code"}, "code": {c}, "redirect_uri": {regReturn}})
	}
	refresh := func(client, rt, scope string) (int, map[string]any) {
		t.Helper()
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		if scope != "" {
			form.Set("scope", scope)
		}
		return token(client, form)
	}
	guard := func(path, tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, regAPI+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	mustIssue := func(status int, m map[string]any) map[string]any {
		t.Helper()
		if status != 200 {
			t.Fatalf("issuing before the reload: %d %v\n%s", status, m, caddy.log)
		}
		return m
	}

	// Before the reload.
	app := mustIssue(redeem("app", code("app", "read write")))
	if app["scope"] != "read write" {
		t.Fatalf("app's grant: %v", app)
	}
	appCode := code("app", "read write")
	gone := mustIssue(redeem("gone", code("gone", "read write")))
	goneCode := code("gone", "read")
	goneCC := mustIssue(token("gone", url.Values{"grant_type": {"client_credentials"}}))
	for _, tc := range []struct{ path, tok string }{
		{"/admin", app["access_token"].(string)}, {"/", gone["access_token"].(string)}, {"/", goneCC["access_token"].(string)},
	} {
		if status, _ := guard(tc.path, tc.tok); status != 200 {
			t.Fatalf("guard before the reload on %s: %d", tc.path, status)
		}
	}

	// caddy reload, with write dropped from app and gone removed.
	write(true)
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "reload", "--config", path, "--adapter", "caddyfile", "--address", regAdmin)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}

	// Asking for the dropped scope is invalid_scope, and does not burn the
	// refresh token.
	if status, m := refresh("app", app["refresh_token"].(string), "write"); status != 400 || m["error"] != "invalid_scope" {
		t.Errorf("refresh asking for write after the reload: %d %v, want 400 invalid_scope", status, m)
	}
	status, m := refresh("app", app["refresh_token"].(string), "")
	if status != 200 || m["scope"] != "read" {
		t.Errorf("refresh after the reload: %d %v, want scope read", status, m)
	}
	if status == 200 {
		// The rotated refresh token carries read only.
		if status, m := refresh("app", m["refresh_token"].(string), "read write"); status != 400 || m["error"] != "invalid_scope" {
			t.Errorf("second refresh asking for read write: %d %v, want 400 invalid_scope", status, m)
		}
	}
	if status, m := redeem("app", appCode); status != 200 || m["scope"] != "read" {
		t.Errorf("code issued before the reload, redeemed after: %d %v, want scope read", status, m)
	}
	// The guard: app's old token no longer carries write; read still passes.
	if status, challenge := guard("/admin", app["access_token"].(string)); status != 403 || !strings.Contains(challenge, `error="insufficient_scope"`) {
		t.Errorf("app's old token on a write route after the reload: %d %q, want 403 insufficient_scope", status, challenge)
	}
	if status, _ := guard("/", app["access_token"].(string)); status != 200 {
		t.Errorf("app's old token on a read route after the reload: %d, want 200", status)
	}

	// The removed client: its tokens fail the guard, and it can neither
	// refresh nor redeem.
	for _, tok := range []string{gone["access_token"].(string), goneCC["access_token"].(string)} {
		if status, challenge := guard("/", tok); status != 401 || !strings.Contains(challenge, `error="invalid_token"`) {
			t.Errorf("removed client's token at the guard: %d %q, want 401 invalid_token", status, challenge)
		}
	}
	if status, m := refresh("gone", gone["refresh_token"].(string), ""); status != 401 || m["error"] != "invalid_client" {
		t.Errorf("removed client refreshing: %d %v, want 401 invalid_client", status, m)
	}
	if status, m := redeem("gone", goneCode); status != 401 || m["error"] != "invalid_client" {
		t.Errorf("removed client redeeming a code: %d %v, want 401 invalid_client", status, m)
	}
	if t.Failed() {
		t.Logf("caddy log:\n%s", caddy.log)
	}
}
