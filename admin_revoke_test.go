package oauth2

// "Log alice out everywhere": the admin revoke by user and by client, run
// with `caddy oauth2 revoke` against a real Caddy process, on each store.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const revokeAdmin = "127.0.0.1:2392"

// adminRevokeConfig names its users and client with sfx, so that runs
// against a database that keeps rows from earlier runs count only their own.
func adminRevokeConfig(store, sfx string) string {
	return `{
	admin ` + revokeAdmin + `
	default_bind 127.0.0.1
	http_port 19580
	https_port 19443
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "admin-revoke-test-secret-of-32-bytes!"
		access_token_store ` + store + `
		authorization_code_store ` + store + `
		client app {
			redirect_uri http://127.0.0.1:9999/cb
			scopes read
			skip_consent
		}
		client svc` + sfx + ` {
			secret_hash ` + secretHash + `
			grant_types client_credentials
			scopes read
		}
	}
}
http://127.0.0.1:19580 {
	handle /oauth2/authorize {
		basic_auth {
			alice` + sfx + ` ` + aliceHash + `
			bob` + sfx + ` ` + aliceHash + `
		}
		oauth2_server
	}
	oauth2_server
}
http://127.0.0.1:19581 {
	oauth2_guard read
	respond "ok {http.auth.user.id}"
}
`
}

// codeFlow runs the authorization code flow for user (whose password is
// alice-password) and returns the tokens.
func codeFlow(t *testing.T, user string) *oauth2.Token {
	t.Helper()
	conf := &oauth2.Config{ClientID: "app", RedirectURL: "http://127.0.0.1:9999/cb", Scopes: []string{"read"},
		Endpoint: oauth2.Endpoint{AuthURL: "http://127.0.0.1:19580/oauth2/authorize",
			TokenURL: "http://127.0.0.1:19580/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	req, _ := http.NewRequest(http.MethodGet, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), nil)
	req.SetBasicAuth(user, "alice-password")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize for %s: %d %q", user, resp.StatusCode, resp.Header.Get("Location"))
	}
	tok, err := conf.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange for %s: %v", user, err)
	}
	return tok
}

func guardStatus(t *testing.T, access string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:19581/", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func refreshStatus(t *testing.T, refresh string) int {
	t.Helper()
	resp, err := http.PostForm("http://127.0.0.1:19580/oauth2/token",
		url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"app"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func runAdminRevoke(t *testing.T, store string) {
	// Connections kept alive to an earlier test's Caddy on these ports
	// would answer EOF.
	http.DefaultClient.CloseIdleConnections()
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	sfx := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	if err := os.WriteFile(path, []byte(adminRevokeConfig(store, sfx)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCaddyProcess(t, path, 19580, 19581)
	alice, bob := codeFlow(t, "alice"+sfx), codeFlow(t, "bob"+sfx)
	cc := &clientcredentials.Config{ClientID: "svc" + sfx, ClientSecret: "s3cret",
		TokenURL: "http://127.0.0.1:19580/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}
	svc, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []*oauth2.Token{alice, bob, svc} {
		if code := guardStatus(t, tok.AccessToken); code != 200 {
			t.Fatalf("guard before revoking: %d\n%s", code, p.log)
		}
	}

	revoke := func(args ...string) int64 {
		t.Helper()
		out, errs, code := caddyCLI(t, "", append([]string{"oauth2", "revoke", "--address", revokeAdmin}, args...)...)
		if code != 0 {
			t.Fatalf("caddy oauth2 revoke %v: exit %d: %s\n%s", args, code, errs, p.log)
		}
		var res struct{ Revoked int64 }
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("revoke answered %q", out)
		}
		return res.Revoked
	}
	// Alice's code (redeemed, kept until purged), access and refresh token.
	if n := revoke("--subject", "alice"+sfx); n != 3 {
		t.Errorf("revoked %d for alice, want 3", n)
	}
	if code := guardStatus(t, alice.AccessToken); code != 401 {
		t.Errorf("alice's access token after revoking her: %d, want 401", code)
	}
	if code := refreshStatus(t, alice.RefreshToken); code != 400 {
		t.Errorf("alice's refresh after revoking her: %d, want 400", code)
	}
	if guardStatus(t, bob.AccessToken) != 200 || guardStatus(t, svc.AccessToken) != 200 {
		t.Error("revoking alice touched another user's or a client's token")
	}
	if n := revoke("--client", "svc"+sfx); n != 1 {
		t.Errorf("revoked %d for client svc, want 1", n)
	}
	if code := guardStatus(t, svc.AccessToken); code != 401 {
		t.Errorf("svc's token after revoking the client: %d", code)
	}
	// A client_credentials token's user is its client ({http.auth.user.id}
	// is the client_id), so revoking that subject revokes it (issue 16).
	svc2, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if code := guardStatus(t, svc2.AccessToken); code != 200 {
		t.Fatalf("a new svc token: %d", code)
	}
	if n := revoke("--subject", "svc"+sfx); n != 1 {
		t.Errorf("revoked %d for subject svc (its client_credentials token), want 1", n)
	}
	if code := guardStatus(t, svc2.AccessToken); code != 401 {
		t.Errorf("svc's client_credentials token after revoking the subject svc: %d, want 401", code)
	}
	if code := refreshStatus(t, bob.RefreshToken); code != 200 {
		t.Errorf("bob's refresh: %d, want 200", code)
	}
	if n := revoke("--subject", "nobody"); n != 0 {
		t.Errorf("revoked %d for an unknown user", n)
	}
	if _, errs, code := caddyCLI(t, "", "oauth2", "revoke", "--address", revokeAdmin); code == 0 || !strings.Contains(errs, "give --subject, --client or both") {
		t.Errorf("revoke without a target: exit %d, %q", code, errs)
	}
	// The admin route itself refuses a body it does not understand.
	req, _ := http.NewRequest(http.MethodPost, "http://"+revokeAdmin+"/oauth2/revoke", strings.NewReader(`{"user":"alice"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "http://"+revokeAdmin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("unknown field: %d, want 400", resp.StatusCode)
	}
	for _, raw := range []string{alice.AccessToken, alice.RefreshToken, svc.AccessToken} {
		if strings.Contains(p.log.String(), raw[4:]) {
			t.Fatal("a token reached Caddy's log")
		}
	}
}

func TestAdminRevokeCache(t *testing.T) { runAdminRevoke(t, "cache") }

func TestAdminRevokeSQLite(t *testing.T) {
	runAdminRevoke(t, fmt.Sprintf("sql {\n\t\t\tdialect sqlite\n\t\t\tdsn %s\n\t\t\tcreate_schema\n\t\t}", filepath.Join(t.TempDir(), "oauth2.db")))
}

func TestAdminRevokeMariaDB(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_MYSQL_DSN")
	if dsn == "" {
		t.Skip("OAUTH2_TEST_MYSQL_DSN is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\"")
	}
	runAdminRevoke(t, fmt.Sprintf("sql {\n\t\t\tdialect mysql\n\t\t\tdsn %q\n\t\t\ttable_prefix adm_\n\t\t\tcreate_schema\n\t\t}", dsn))
}

func TestAdminRevokePostgres(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("OAUTH2_TEST_POSTGRES_DSN is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\"")
	}
	runAdminRevoke(t, fmt.Sprintf("sql {\n\t\t\tdialect postgres\n\t\t\tdsn %q\n\t\t\ttable_prefix adm_\n\t\t\tcreate_schema\n\t\t}", dsn))
}

func TestAdminRevokeCassandra(t *testing.T) {
	hosts := os.Getenv("OAUTH2_TEST_CASSANDRA_HOSTS")
	if hosts == "" {
		t.Skip("OAUTH2_TEST_CASSANDRA_HOSTS is not set: run scripts/cassandra.sh start and eval \"$(scripts/cassandra.sh env)\"")
	}
	runAdminRevoke(t, fmt.Sprintf("cassandra {\n\t\t\thosts %s\n\t\t\tkeyspace oauth2_admin_test\n\t\t\tcreate_schema\n\t\t\treplication SimpleStrategy 1\n\t\t}",
		strings.ReplaceAll(hosts, ",", " ")))
}
