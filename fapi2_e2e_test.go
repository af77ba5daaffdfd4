package oauth2

// The FAPI 2.0 flow driven by a client nobody here wrote: panva's
// oauth4webapi (scripts/oauth4webapi/fapi2.mjs) pushes its authorization
// request, authenticates with private_key_jwt, gets DPoP-bound tokens,
// calls an API behind oauth2_guard with DPoP and refreshes, through a real
// Caddy with profile fapi2, on the cache store and on PostgreSQL. Ports
// 19520-19522, admin 19547.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// apiResult is a call the script made to the API behind the guard.
type apiResult struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

func fapi2Config(store, jwksFile, app string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:19547
	default_bind 127.0.0.1
	http_port 19520
	https_port 19522
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "fapi2-e2e-test-secret-of-at-least-32-bytes"
		issuer http://127.0.0.1:19520
		access_token_store %[1]s
		authorization_code_store %[1]s
		%[2]s
		client bank-app {
			jwks %[3]s
			redirect_uri http://127.0.0.1:9999/cb
			scopes accounts
			skip_consent
		}
	}
}
http://127.0.0.1:19520 {
	handle /oauth2/authorize {
		basic_auth {
			alice %[4]s
		}
		oauth2_server
	}
	oauth2_server
}
http://127.0.0.1:19521 {
	oauth2_guard accounts {
		%[5]s
	}
	respond "accounts of {http.auth.user.id}"
}
`, store, app, jwksFile, aliceHash, "dpop required")
}

func TestFAPI2OAuth4WebAPICache(t *testing.T) { runFAPI2OAuth4WebAPI(t, "cache") }

func TestFAPI2OAuth4WebAPIPostgres(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set OAUTH2_TEST_POSTGRES_DSN to run the FAPI 2.0 flow on PostgreSQL (scripts/services.sh env prints it)")
	}
	runFAPI2OAuth4WebAPI(t, fmt.Sprintf("sql {\n\t\t\tdialect postgres\n\t\t\tdsn %q\n\t\t\ttable_prefix fapi_\n\t\t\tcreate_schema\n\t\t}", dsn))
}

func runFAPI2OAuth4WebAPI(t *testing.T, store string) {
	flow := os.Getenv("OAUTH2_TEST_OAUTH4WEBAPI")
	if flow == "" {
		t.Skip("OAUTH2_TEST_OAUTH4WEBAPI is not set: run scripts/oauth4webapi.sh install and eval \"$(scripts/oauth4webapi.sh env)\"")
	}
	dir := t.TempDir()
	// The script runs from a folder whose node_modules is the installed
	// one, so it needs no reinstall of the cache.
	if err := os.Symlink(filepath.Join(filepath.Dir(flow), "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("scripts/oauth4webapi/fapi2.mjs")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fapi2.mjs"), script, 0o600); err != nil {
		t.Fatal(err)
	}

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "bank-1", Algorithm: "ES256", Use: "sig"}}})
	private, _ := json.Marshal(jose.JSONWebKey{Key: priv, KeyID: "bank-1"})
	jwksFile, keyFile := filepath.Join(dir, "bank.jwks.json"), filepath.Join(dir, "bank.key.json")
	if err := os.WriteFile(jwksFile, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, private, 0o600); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(fapi2Config(store, jwksFile, "profile fapi2")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCaddyProcess(t, path, 19520, 19521, 19547)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "fapi2.mjs"))
	cmd.Env = append(os.Environ(), "FLOW_ISSUER=http://127.0.0.1:19520", "FLOW_CLIENT_ID=bank-app", "FLOW_CLIENT_KEY="+keyFile,
		"FLOW_REDIRECT_URI=http://127.0.0.1:9999/cb", "FLOW_SCOPE=accounts", "FLOW_USER=alice", "FLOW_PASSWORD=alice-password",
		"FLOW_API=http://127.0.0.1:19521/accounts", "FLOW_DPOP=1")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("oauth4webapi FAPI 2.0 flow: %v\n%s\n%s", err, stderr, tail(p.log.String(), 40))
	}
	var res struct {
		AccessToken        string    `json:"access_token"`
		TokenType          string    `json:"token_type"`
		Refreshed          string    `json:"refreshed"`
		RefreshedTokenType string    `json:"refreshed_token_type"`
		API                apiResult `json:"api"`
		APIRefreshed       apiResult `json:"api_refreshed"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("oauth4webapi printed %q", out)
	}
	if res.API.Status != 200 || res.API.Body != "accounts of alice" || res.APIRefreshed.Status != 200 {
		t.Fatalf("API calls through oauth2_guard: %+v %+v", res.API, res.APIRefreshed)
	}
	// The guard is asked with the token alone, as a thief would send it.
	asBearer := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:19521/accounts", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// RFC 9449 §5, §7.2: DPoP-bound, before and after the refresh, and
	// refused as bearer tokens.
	if !strings.EqualFold(res.TokenType, "DPoP") || !strings.EqualFold(res.RefreshedTokenType, "DPoP") {
		t.Errorf("token types %q and %q, want DPoP", res.TokenType, res.RefreshedTokenType)
	}
	for _, tok := range []string{res.AccessToken, res.Refreshed} {
		if code := asBearer(tok); code != http.StatusUnauthorized {
			t.Errorf("a DPoP-bound token as Bearer: %d", code)
		}
	}
	// profile fapi2: no token without a DPoP proof, even for a well
	// authenticated client.
	k := &e2eKey{priv: priv, kid: "bank-1"}
	status, body := parPost(t, "http://127.0.0.1:19520/oauth2/token", assertionForm(k.assertion(t, "bank-app", "http://127.0.0.1:19520", nil),
		"grant_type", "client_credentials"))
	if status != http.StatusBadRequest || body["error"] != "invalid_dpop_proof" {
		t.Errorf("a token request without DPoP under fapi2: %d %v", status, body)
	}
}
