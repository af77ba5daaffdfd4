package oauth2

// Clients at runtime, end to end: a client made with `caddy oauth2 clients
// add` on gateway A serves a code flow and a client-credentials flow on
// gateway B within a second; its secret rotates with a grace period; its
// deletion stops its tokens on both gateways within a second. With the
// cache store both "gateways" are the one process. Ports 19850-19855 and
// admin 127.0.0.1:2395-2396.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// clientsGateway is one Caddy of the test: its admin address and the
// origins of its server and guard sites.
type clientsGateway struct {
	admin, server, guard string
	p                    *caddyProcess
}

// clientsConfig uses store for both tokens and codes; what follows a
// newline and two tabs in it are more app options, after the token store.
func clientsConfig(store, sfx string, n int) string {
	codes, _, _ := strings.Cut(store, "\n\t\tvalidation_cache")
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	default_bind 127.0.0.1
	http_port %d
	https_port %d
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "clients-e2e-test-secret-of-32-bytes!"
		access_token_store %s
		authorization_code_store %s
		revocation_feed 200ms
		client cfg%s {
			redirect_uri http://127.0.0.1:9999/cb
			scopes read
		}
	}
}
http://127.0.0.1:%d {
	handle /oauth2/authorize {
		basic_auth {
			alice%s %s
		}
		oauth2_server
	}
	oauth2_server
}
http://127.0.0.1:%d {
	oauth2_guard read
	respond "ok {http.auth.user.id}"
}
`, 2395+n, 19850+2*n, 19854+n, store, codes, sfx, 19850+2*n, sfx, aliceHash, 19851+2*n)
}

func startClientsGateway(t *testing.T, store, sfx string, n int) *clientsGateway {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(clientsConfig(store, sfx, n)), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &clientsGateway{
		admin:  fmt.Sprintf("127.0.0.1:%d", 2395+n),
		server: fmt.Sprintf("http://127.0.0.1:%d", 19850+2*n),
		guard:  fmt.Sprintf("http://127.0.0.1:%d", 19851+2*n),
	}
	g.p = startCaddyProcess(t, path, 19850+2*n, 19851+2*n)
	return g
}

// cli runs `caddy oauth2 clients ...` against the gateway's admin API.
func (g *clientsGateway) cli(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	full := append([]string{"oauth2", "clients"}, args...)
	full = append(full, "--address", g.admin)
	out, errs, code := caddyCLI(t, stdin, full...)
	if code != 0 {
		t.Fatalf("caddy %v: exit %d: %s\n%s", full, code, errs, g.p.log)
	}
	return out
}

func (g *clientsGateway) guardStatus(t *testing.T, access string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.guard+"/", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// ccToken runs the client-credentials grant; it returns the token or the
// status of the refusal.
func (g *clientsGateway) ccToken(id, secret string) (string, int) {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}
	req, _ := http.NewRequest(http.MethodPost, g.server+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return body.AccessToken, resp.StatusCode
}

// codeFlowWith runs the authorization code flow (the client skips consent)
// for user and returns the tokens.
func (g *clientsGateway) codeFlowWith(t *testing.T, id, secret, user string) (*oauth2.Token, error) {
	t.Helper()
	conf := &oauth2.Config{ClientID: id, ClientSecret: secret, RedirectURL: "http://127.0.0.1:9999/cb", Scopes: []string{"read"},
		Endpoint: oauth2.Endpoint{AuthURL: g.server + "/oauth2/authorize", TokenURL: g.server + "/oauth2/token",
			AuthStyle: oauth2.AuthStyleInHeader}}
	verifier := oauth2.GenerateVerifier()
	req, _ := http.NewRequest(http.MethodGet, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), nil)
	req.SetBasicAuth(user, "alice-password")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		return nil, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		return nil, fmt.Errorf("authorize: %d %s %q", resp.StatusCode, resp.Header.Get("Location"), b)
	}
	return conf.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
}

// within retries f every 50ms until it holds or d has passed.
func within(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func runClientsAdmin(t *testing.T, store string, twoGateways bool) {
	http.DefaultClient.CloseIdleConnections()
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	sfx := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	a := startClientsGateway(t, store, sfx, 0)
	b := a
	if twoGateways {
		b = startClientsGateway(t, store, sfx, 1)
	}

	// Created on A with the CLI; the secret is printed once.
	// The admin API answers once every app has started.
	for _, g := range []*clientsGateway{a, b} {
		if !within(30*time.Second, func() bool { s, _ := adminDo(t, g.admin, http.MethodGet, "/oauth2/clients", ""); return s == 200 }) {
			t.Fatalf("the oauth2 app did not start\n%s", g.p.log)
		}
	}
	out := a.cli(t, "", "add", "--id", "svc"+sfx, "--name", "Service", "--redirect-uri", "http://127.0.0.1:9999/cb",
		"--grant-type", "authorization_code", "--grant-type", "client_credentials", "--scope", "read", "--skip-consent")
	var created map[string]any
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("add printed %q", out)
	}
	id, _ := created["client_id"].(string)
	secret, _ := created["client_secret"].(string)
	if id != "svc"+sfx || !strings.HasPrefix(secret, "ccs_") || created["source"] != "admin" {
		t.Fatalf("add printed %v", created)
	}
	// B learns of it from the feed; its admin API shows what its token
	// endpoint and guard use. Polling the token endpoint itself would count
	// failures towards the client's lockout.
	start := time.Now()
	known := func(g *clientsGateway, f func(map[string]any) bool) bool {
		status, body := adminDo(t, g.admin, http.MethodGet, "/oauth2/clients/"+url.PathEscape(id), "")
		var v map[string]any
		return status == 200 && json.Unmarshal([]byte(body), &v) == nil && f(v)
	}
	if !within(time.Second, func() bool { return known(b, func(map[string]any) bool { return true }) }) {
		t.Fatalf("gateway B did not know the new client within 1s\n%s", b.p.log)
	}
	t.Logf("the new client known on B after %v", time.Since(start))
	cc, code := b.ccToken(id, secret)
	if code != 200 {
		t.Fatalf("client credentials on B: %d\n%s", code, b.p.log)
	}
	tok, err := b.codeFlowWith(t, id, secret, "alice"+sfx)
	if err != nil {
		t.Fatalf("code flow on B: %v\n%s", err, b.p.log)
	}
	for _, g := range []*clientsGateway{a, b} {
		if code := g.guardStatus(t, tok.AccessToken); code != 200 {
			t.Errorf("guard %s: code-flow token %d", g.guard, code)
		}
		if code := g.guardStatus(t, cc); code != 200 {
			t.Errorf("guard %s: client-credentials token %d", g.guard, code)
		}
	}

	// The list shows both kinds; show never has a secret.
	var list []map[string]any
	if err := json.Unmarshal([]byte(b.cli(t, "", "list")), &list); err != nil {
		t.Fatal(err)
	}
	sources := map[string]any{}
	for _, c := range list {
		sources[c["id"].(string)] = c["source"]
		if _, ok := c["client_secret"]; ok {
			t.Error("the list shows a secret")
		}
	}
	if sources["cfg"+sfx] != "config" || sources[id] != "admin" {
		t.Errorf("list sources %v", sources)
	}
	if shown := a.cli(t, "", "show", id); strings.Contains(shown, secret) || strings.Contains(shown, "$2a$") {
		t.Errorf("show reveals the secret or its hash: %s", shown)
	}

	// Update on A: the scope change reaches B's guard.
	a.cli(t, "", "update", id, "--name", "Renamed")
	var shown map[string]any
	if !within(time.Second, func() bool {
		_ = json.Unmarshal([]byte(b.cli(t, "", "show", id)), &shown)
		return shown["client_name"] == "Renamed"
	}) {
		t.Errorf("B shows %v after the update", shown)
	}
	if shown["scope"] != "read" || shown["skip_consent"] != true {
		t.Errorf("update lost fields: %v", shown)
	}

	// Rotation: the old secret works during the grace period, then 401.
	var rotated map[string]any
	if err := json.Unmarshal([]byte(a.cli(t, "", "rotate-secret", id, "--grace", "3s")), &rotated); err != nil {
		t.Fatal(err)
	}
	newSecret, _ := rotated["client_secret"].(string)
	if newSecret == "" || newSecret == secret {
		t.Fatalf("rotate printed %v", rotated)
	}
	rotatedAt := time.Now()
	if !within(time.Second, func() bool {
		return known(b, func(v map[string]any) bool { return v["previous_secret_expires_at"] != nil })
	}) {
		t.Fatalf("B does not know the rotation within 1s\n%s", b.p.log)
	}
	if _, code := b.ccToken(id, newSecret); code != 200 {
		t.Fatalf("the new secret on B: %d", code)
	}
	if _, code := b.ccToken(id, secret); code != 200 {
		t.Errorf("the old secret during the grace period: %d", code)
	}
	// Few failures, or the client's lockout would answer 429.
	time.Sleep(time.Until(rotatedAt.Add(3*time.Second + 100*time.Millisecond)))
	if _, code := b.ccToken(id, secret); code != 401 {
		t.Errorf("the old secret after the grace period: %d", code)
	}
	if _, code := a.ccToken(id, secret); code != 401 {
		t.Errorf("A: the old secret after the grace period: %d", code)
	}
	if _, code := a.ccToken(id, newSecret); code != 200 {
		t.Errorf("A: the new secret: %d", code)
	}

	// Rotation without grace stops the old secret at once, memo or not.
	if err := json.Unmarshal([]byte(a.cli(t, "", "rotate-secret", id)), &rotated); err != nil {
		t.Fatal(err)
	}
	if _, code := a.ccToken(id, newSecret); code != 401 {
		t.Errorf("a secret rotated without grace still works on A: %d", code)
	}

	// Deleting revokes: its tokens fail on both gateways within 1s.
	if out := a.cli(t, "", "delete", id); !strings.Contains(out, "deleted") {
		t.Errorf("delete printed %q", out)
	}
	for _, g := range []*clientsGateway{a, b} {
		if !within(time.Second, func() bool {
			return g.guardStatus(t, tok.AccessToken) == 401 && g.guardStatus(t, cc) == 401
		}) {
			t.Errorf("guard %s still admits a deleted client's tokens after 1s", g.guard)
		}
	}
	if !within(time.Second, func() bool {
		status, _ := adminDo(t, b.admin, http.MethodGet, "/oauth2/clients/"+url.PathEscape(id), "")
		return status == 404
	}) {
		t.Error("B still knows the deleted client after 1s")
	}
	if _, code := b.ccToken(id, rotated["client_secret"].(string)); code != 401 {
		t.Errorf("a deleted client gets tokens: %d", code)
	}

	// A secret of the operator's, from standard input, never from argv.
	a.cli(t, "chosen-secret-of-the-operator\n", "add", "--id", "given"+sfx, "--secret-stdin",
		"--grant-type", "client_credentials", "--scope", "read")
	if !within(time.Second, func() bool {
		status, _ := adminDo(t, b.admin, http.MethodGet, "/oauth2/clients/given"+sfx, "")
		return status == 200
	}) {
		t.Fatal("B does not know the client with a given secret")
	}
	if _, code := b.ccToken("given"+sfx, "chosen-secret-of-the-operator"); code != 200 {
		t.Errorf("a client with a secret from stdin: %d", code)
	}
	a.cli(t, "", "delete", "given"+sfx)

	// The configured client cannot be changed or taken.
	if _, errs, code := caddyCLI(t, "", "oauth2", "clients", "delete", "cfg"+sfx, "--address", a.admin); code == 0 || !strings.Contains(errs, "409") {
		t.Errorf("deleting a configured client: exit %d %s", code, errs)
	}
	if _, errs, code := caddyCLI(t, "", "oauth2", "clients", "add", "--id", "cfg"+sfx, "--redirect-uri", "http://127.0.0.1:9999/cb", "--public", "--address", a.admin); code == 0 || !strings.Contains(errs, "invalid_client_metadata") {
		t.Errorf("registering a configured client's id: exit %d %s", code, errs)
	}
	// Bad input: 400 with the RFC 7591 error and the field; nothing stored.
	for body, want := range map[string]string{
		`{"redirect_uris":["http://example.com/cb"]}`:                                                                 `"error":"invalid_redirect_uri"`,
		`{"redirect_uris":"https://x.example/cb"}`:                                                                    `"field":"redirect_uris"`,
		`{"redirect_uris":["https://x.example/cb"],"grant_types":["password"]}`:                                       `"field":"grant_types"`,
		`{"redirect_uris":["https://x.example/cb"],"token_endpoint_auth_method":"jwt"}`:                               `"field":"token_endpoint_auth_method"`,
		`{"client_id":"bad` + sfx + `","redirect_uris":["https://x.example/cb"],"logo_uri":"http://x.example/l.png"}`: `"field":"logo_uri"`,
		`[1]`: `"error":"invalid_client_metadata"`,
	} {
		status, got := adminDo(t, a.admin, http.MethodPost, "/oauth2/clients", body)
		if status != 400 || !strings.Contains(got, want) {
			t.Errorf("POST %s: %d %s, want 400 %s", body, status, got, want)
		}
	}
	if status, _ := adminDo(t, a.admin, http.MethodGet, "/oauth2/clients/bad"+sfx, ""); status != 404 {
		t.Errorf("a refused client was stored: %d", status)
	}
	for _, g := range []*clientsGateway{a, b} {
		for _, raw := range []string{secret, newSecret, tok.AccessToken, cc, "chosen-secret-of-the-operator"} {
			if strings.Contains(g.p.log.String(), raw[4:]) {
				t.Fatal("a secret or token reached Caddy's log")
			}
		}
	}
}

// adminDo calls an admin route and returns the status and body.
func adminDo(t *testing.T, admin, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+admin+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "http://"+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestClientsAdminCache(t *testing.T) { runClientsAdmin(t, "cache", false) }

func TestClientsAdminSQLite(t *testing.T) {
	db := filepath.Join(t.TempDir(), "oauth2.db")
	runClientsAdmin(t, fmt.Sprintf("sql {\n\t\t\tdialect sqlite\n\t\t\tdsn %s\n\t\t\tcreate_schema\n\t\t}", db), true)
}

func TestClientsAdminMariaDB(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_MYSQL_DSN")
	if dsn == "" {
		t.Skip("OAUTH2_TEST_MYSQL_DSN is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\"")
	}
	runClientsAdmin(t, fmt.Sprintf("sql {\n\t\t\tdialect mysql\n\t\t\tdsn %q\n\t\t\ttable_prefix cli_\n\t\t\tcreate_schema\n\t\t}", dsn), true)
}

func TestClientsAdminPostgres(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("OAUTH2_TEST_POSTGRES_DSN is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\"")
	}
	runClientsAdmin(t, fmt.Sprintf("sql {\n\t\t\tdialect postgres\n\t\t\tdsn %q\n\t\t\ttable_prefix cli_\n\t\t\tcreate_schema\n\t\t}", dsn), true)
}

func TestClientsAdminCassandra(t *testing.T) {
	hosts := os.Getenv("OAUTH2_TEST_CASSANDRA_HOSTS")
	if hosts == "" {
		t.Skip("OAUTH2_TEST_CASSANDRA_HOSTS is not set: run scripts/cassandra.sh start and eval \"$(scripts/cassandra.sh env)\"")
	}
	runClientsAdmin(t, fmt.Sprintf("cassandra {\n\t\t\thosts %s\n\t\t\tkeyspace oauth2_clients_test\n\t\t\tcreate_schema\n\t\t\treplication SimpleStrategy 1\n\t\t}",
		strings.ReplaceAll(hosts, ",", " ")), true)
}

// With the validation cache, its feed follower tells the registry.
func TestClientsAdminSQLiteValidationCache(t *testing.T) {
	db := filepath.Join(t.TempDir(), "oauth2.db")
	runClientsAdmin(t, fmt.Sprintf("sql {\n\t\t\tdialect sqlite\n\t\t\tdsn %s\n\t\t\tcreate_schema\n\t\t}\n\t\tvalidation_cache 30s", db), true)
}
