package oauth2

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// jwtFleetConfig is one of two gateways sharing a PostgreSQL store and
// issuing JWT access tokens with generated keys; auth and api are its ports.
func jwtFleetConfig(dsn string, auth, api int) string {
	return fmt.Sprintf(`{
	admin off
	default_bind 127.0.0.1
	http_port %[3]d
	grace_period 1s
	persist_config off
	oauth2 {
		issuer http://127.0.0.1:20483
		token_secret "jwt-fleet-secret-of-at-least-32-bytes"
		access_token_format jwt
		access_token_store sql {
			dialect postgres
			dsn %[1]q
			table_prefix jwtfleet_
			create_schema
		}
		client svc {
			secret_hash %[2]s
			grant_types client_credentials
			scopes read
		}
	}
}
http://127.0.0.1:%[3]d {
	oauth2_server
}
http://127.0.0.1:%[4]d {
	oauth2_guard read
	respond "ok {oauth2.claims.sub}"
}
`, dsn, secretHash, auth, api)
}

func startJWTGateway(t *testing.T, dsn string, auth, api int) *caddyProcess {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(jwtFleetConfig(dsn, auth, api)), 0o600); err != nil {
		t.Fatal(err)
	}
	return startCaddyProcess(t, path, auth, api)
}

func gatewayJWKS(t *testing.T, auth int) []string {
	t.Helper()
	resp, body := get(t, nil, fmt.Sprintf("http://127.0.0.1:%d/.well-known/jwks.json", auth), "")
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &set) != nil {
		t.Fatalf("jwks: %d %s", resp.StatusCode, body)
	}
	var ids []string
	for _, k := range set.Keys {
		if k.D != "" {
			t.Fatal("the JWKS publishes a private key")
		}
		ids = append(ids, k.Kid)
	}
	slices.Sort(ids)
	return ids
}

// TestJWTFleetPostgres: two gateways over one PostgreSQL store share the
// generated signing keys (kept sealed, across restarts), accept each
// other's JWTs, and a JWT revoked through one is refused by the other
// within the revocation feed's bound.
func TestJWTFleetPostgres(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set OAUTH2_TEST_POSTGRES_DSN to run two JWT gateways on PostgreSQL (scripts/services.sh env prints it)")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dropPrefixed(t, db, "pgx", "jwtfleet_")

	a := startJWTGateway(t, dsn, 20483, 20484)
	startJWTGateway(t, dsn, 20485, 20486)
	ctx := context.Background()
	cc := &clientcredentials.Config{ClientID: "svc", ClientSecret: "s3cret", TokenURL: "http://127.0.0.1:20483/oauth2/token",
		Scopes: []string{"read"}, AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(tok.AccessToken, ".") != 2 {
		t.Fatalf("not a JWT: %.12s…", tok.AccessToken)
	}
	for _, api := range []int{20484, 20486} {
		if resp, body := get(t, nil, fmt.Sprintf("http://127.0.0.1:%d/", api), tok.AccessToken); resp.StatusCode != 200 || body != "ok svc" {
			t.Fatalf("gateway %d: %d %s", api, resp.StatusCode, body)
		}
	}
	// The private keys are sealed at rest.
	var sealed string
	if err := db.QueryRow("SELECT sealed FROM jwtfleet_signing_keys LIMIT 1").Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "PRIVATE") || strings.Contains(sealed, "MHc") || strings.Contains(sealed, "MIG") {
		t.Fatalf("signing key stored in the clear: %.20s…", sealed)
	}

	// Revoked through gateway A, refused by gateway B within two feed
	// intervals (500ms) and a margin.
	form := url.Values{"token": {tok.AccessToken}}
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:20483/oauth2/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	resp.Body.Close()
	revoked := time.Now()
	for {
		resp, _ := get(t, nil, "http://127.0.0.1:20486/", tok.AccessToken)
		if resp.StatusCode == http.StatusUnauthorized {
			t.Logf("revocation through A refused by B after %v", time.Since(revoked).Round(time.Millisecond))
			break
		}
		if time.Since(revoked) > 3*time.Second {
			t.Fatalf("gateway B still accepts a JWT revoked through A after %v", time.Since(revoked))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Restarted, gateway A signs with the stored keys: no new key.
	before := gatewayJWKS(t, 20483)
	a.stop(t)
	startJWTGateway(t, dsn, 20483, 20484)
	if after := gatewayJWKS(t, 20483); !slices.Equal(before, after) {
		t.Fatalf("keys after a restart %v, before %v", after, before)
	}
	tok2, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, nil, "http://127.0.0.1:20486/", tok2.AccessToken); resp.StatusCode != 200 {
		t.Fatalf("gateway B refuses a JWT of the restarted A: %d %s", resp.StatusCode, body)
	}
}
