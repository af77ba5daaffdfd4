package oauth2

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	rpServer = "http://127.0.0.1:19942"
	rpGuard  = "http://127.0.0.1:19943"
	rpAdmin  = "127.0.0.1:2431"
)

// rpConfig is a Caddyfile for the openid-client tests: basic auth in front
// of the authorization endpoint for requests that bring credentials (one
// without reaches oauth2_server with no user, which is how prompt=none
// learns nobody is signed in), the user's email and sign-in time set by
// the site from the authenticated user, a confidential client that needs consent and a public
// one that skips it.
func rpConfig(store, format, sfx string) string {
	return `{
	admin ` + rpAdmin + `
	default_bind 127.0.0.1
	http_port 19942
	https_port 19944
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "openid-client-e2e-secret-of-32-bytes"
		access_token_store ` + store + `
		authorization_code_store ` + store + `
		access_token_format ` + format + `
		oidc {
			claim email {http.request.header.X-User-Email}
			auth_time_placeholder {http.request.header.X-Auth-Time}
		}
		client rp {
			secret_hash ` + secretHash + `
			redirect_uri http://127.0.0.1:9999/cb
			post_logout_redirect_uri http://127.0.0.1:9999/bye
			scopes openid email read
			name "openid-client"
		}
		client rp-spa {
			redirect_uri http://127.0.0.1:9999/cb
			scopes openid email read
			skip_consent
		}
	}
}
http://127.0.0.1:19942 {
	handle /oauth2/authorize {
		route {
			@credentials header Authorization *
			basic_auth @credentials {
				alice` + sfx + ` ` + aliceHash + `
			}
			request_header X-User-Email "{http.auth.user.id}@example.com"
			# Stands in for a portal that reports when the user signed in:
			# basic auth signs in on every request.
			request_header X-Auth-Time {time.now.unix}
			oauth2_server
		}
	}
	oauth2_server
}
http://127.0.0.1:19943 {
	oauth2_guard read
	respond "ok {http.auth.user.id}"
}
`
}

func rpGuardStatus(t *testing.T, tok string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rpGuard+"/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// runOpenIDClient signs a user in with panva's openid-client
// (scripts/openid-client.sh), a certified OpenID Connect relying party,
// which validates every ID token itself (signature against our JWKS, iss,
// aud, exp, nonce, at_hash), and checks what it reports: UserInfo, refresh
// with a new ID token, prompt=none with and without consent and without a
// signed-in user, RP-initiated logout, and the refusals (nonce mismatch,
// tampered ID token, unregistered post_logout_redirect_uri).
func runOpenIDClient(t *testing.T, store, format string) {
	dir := os.Getenv("OAUTH2_TEST_OPENID_CLIENT")
	if dir == "" {
		t.Skip("OAUTH2_TEST_OPENID_CLIENT is not set: run scripts/openid-client.sh install and eval \"$(scripts/openid-client.sh env)\"")
	}
	http.DefaultClient.CloseIdleConnections()
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	sfx := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(rpConfig(store, format, sfx)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCaddyProcess(t, path, 19942, 19943)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "rp.mjs"))
	user := "alice" + sfx
	cmd.Env = append(os.Environ(), "RP_ISSUER="+rpServer, "RP_CLIENT_ID=rp", "RP_CLIENT_SECRET=s3cret", "RP_SKIP_CLIENT_ID=rp-spa",
		"RP_REDIRECT_URI=http://127.0.0.1:9999/cb", "RP_LOGOUT_URI=http://127.0.0.1:9999/bye", "RP_SCOPE=openid email read",
		"RP_USER="+user, "RP_PASSWORD=alice-password")
	// RP_DEBUG makes rp.mjs print each expected error in full, shown when
	// the test fails.
	cmd.Env = append(cmd.Env, "RP_DEBUG=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openid-client: %v\n%s\n%s\ncaddy:\n%s", err, out, stderr.String(), p.log)
	}
	defer func() {
		if t.Failed() {
			t.Logf("openid-client's errors:\n%s", stderr.String())
		}
	}()
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("openid-client printed %q", out)
	}
	for k, want := range map[string]any{
		"issuer":                 rpServer,
		"sub":                    user,
		"email":                  user + "@example.com",
		"userinfo_sub":           user,
		"userinfo_email":         user + "@example.com",
		"prompt_none_consent":    "consent_required",
		"prompt_none_no_session": "login_required",
		"max_age":                "ok",
		"prompt_login":           "ok",
		"logout":                 "ok",
		"refresh_after_logout":   "invalid_grant",
		// RP-Initiated Logout §3: no redirect to an unregistered URI.
		"unregistered_logout_status":   float64(400),
		"unregistered_logout_location": "",
	} {
		if res[k] != want {
			t.Errorf("%s = %v, want %v", k, res[k], want)
		}
	}
	// The library's own refusals, by its error codes.
	if v, _ := res["nonce_mismatch"].(string); !strings.HasPrefix(v, "OAUTH_JWT_CLAIM_COMPARISON_FAILED") || !strings.Contains(v, `"nonce"`) {
		t.Errorf("nonce mismatch: %v", res["nonce_mismatch"])
	}
	if v, _ := res["tampered"].(string); !strings.Contains(v, "signature verification failed") {
		t.Errorf("tampered ID token: %v", res["tampered"])
	}
	if sid, _ := res["sid"].(string); sid == "" {
		t.Error("the ID token has no sid")
	}
	// Logout revoked that grant only; the guard sees it for opaque tokens
	// at once (a JWT access token lives until it expires, like any JWT).
	if format == "opaque" {
		for _, k := range []string{"access_token", "refreshed_access_token"} {
			if code := rpGuardStatus(t, res[k].(string)); code != http.StatusUnauthorized {
				t.Errorf("guard, %s of the logged-out grant: %d", k, code)
			}
		}
	}
	if code := rpGuardStatus(t, res["silent_access_token"].(string)); code != http.StatusOK {
		t.Errorf("guard, the prompt=none grant of the other client: %d", code)
	}
	if strings.Contains(p.log.String(), res["silent_access_token"].(string)[4:]) {
		t.Error("a token reached Caddy's log")
	}
}

func TestOpenIDClientCache(t *testing.T)    { runOpenIDClient(t, "cache", "opaque") }
func TestOpenIDClientCacheJWT(t *testing.T) { runOpenIDClient(t, "cache", "jwt") }

func openIDClientPostgres(t *testing.T) string {
	dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("OAUTH2_TEST_POSTGRES_DSN is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\"")
	}
	return fmt.Sprintf("sql {\n\t\t\tdialect postgres\n\t\t\tdsn %q\n\t\t\ttable_prefix oidcrp_\n\t\t\tcreate_schema\n\t\t}", dsn)
}

func TestOpenIDClientPostgres(t *testing.T)    { runOpenIDClient(t, openIDClientPostgres(t), "opaque") }
func TestOpenIDClientPostgresJWT(t *testing.T) { runOpenIDClient(t, openIDClientPostgres(t), "jwt") }
