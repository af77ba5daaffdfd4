package oauth2

// Dynamic client registration (RFC 7591) and its management (RFC 7592)
// through a real Caddy, driven with plain HTTP as a client library that has
// no registration helper would, then flows with golang.org/x/oauth2. Ports
// 19858-19859, admin 127.0.0.1:2397.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

const (
	dcrServer = "http://127.0.0.1:19858"
	dcrGuard  = "http://127.0.0.1:19859"
	dcrAdmin  = "127.0.0.1:2397"
	dcrToken  = "initial-access-token-of-at-least-32-bytes"
)

func registerConfig(store, sfx string) string {
	return `{
	admin ` + dcrAdmin + `
	default_bind 127.0.0.1
	http_port 19858
	https_port 19860
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "register-e2e-test-secret-of-32-bytes"
		access_token_store ` + store + `
		authorization_code_store ` + store + `
		registration {
			initial_access_token ` + dcrToken + `
			scopes read write
			max_clients 3
			rate_limit 50
		}
	}
}
http://127.0.0.1:19858 {
	handle /oauth2/authorize {
		basic_auth {
			alice` + sfx + ` ` + aliceHash + `
		}
		oauth2_server
	}
	oauth2_server
}
http://127.0.0.1:19859 {
	oauth2_guard read
	respond "ok {http.auth.user.id}"
}
`
}

// dcrCall sends a JSON request with a bearer token and decodes the answer.
func dcrCall(t *testing.T, method, uri, bearer, body string) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, uri, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, resp.Header, out
}

// consentFlow runs the authorization code flow through the consent page,
// which must say the client registered itself, and returns the tokens.
func consentFlow(t *testing.T, conf *oauth2.Config, user string) *oauth2.Token {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := oauth2.GenerateVerifier()
	req, _ := http.NewRequest(http.MethodGet, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), nil)
	req.SetBasicAuth(user, "alice-password")
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "registered itself") {
		t.Fatalf("consent page of a registered client: %d %s", resp.StatusCode, page)
	}
	form := url.Values{}
	for _, m := range hiddenInputRE.FindAllStringSubmatch(string(page), -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	form.Set("decision", "approve")
	req, _ = http.NewRequest(http.MethodPost, conf.Endpoint.AuthURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(user, "alice-password")
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("consent: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	tok, err := conf.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func dcrGuardStatus(t *testing.T, access string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, dcrGuard+"/", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func runRegister(t *testing.T, store string) {
	http.DefaultClient.CloseIdleConnections()
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	sfx := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(registerConfig(store, sfx)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCaddyProcess(t, path, 19858, 19859)
	// Leftovers of an earlier run against the same database would count
	// against max_clients.
	var status int
	var body string
	within(30*time.Second, func() bool {
		status, body = adminDo(t, dcrAdmin, http.MethodGet, "/oauth2/clients", "")
		return status == 200
	})
	var existing []map[string]any
	if status != 200 || json.Unmarshal([]byte(body), &existing) != nil {
		t.Fatalf("admin list: %d %s", status, body)
	}
	for _, c := range existing {
		adminDo(t, dcrAdmin, http.MethodDelete, "/oauth2/clients/"+url.PathEscape(c["id"].(string)), "")
	}

	// RFC 8414: the metadata names the endpoint.
	_, _, md := dcrCall(t, http.MethodGet, dcrServer+"/.well-known/oauth-authorization-server", "", "")
	if md["registration_endpoint"] != dcrServer+"/oauth2/register" {
		t.Fatalf("metadata: %v", md)
	}
	reg := dcrServer + "/oauth2/register"
	good := `{"client_name":"Agent","redirect_uris":["http://127.0.0.1:9999/cb"],"scope":"read admin","skip_consent":true,"contacts":["ops@example.com"]}`

	// Every refusal, and nothing stored by any of them.
	status, hdr, out := dcrCall(t, http.MethodPost, reg, "", good)
	if status != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no initial access token: %d %v %v", status, hdr, out)
	}
	status, hdr, _ = dcrCall(t, http.MethodPost, reg, "wrong-token", good)
	if status != 401 || !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("wrong initial access token: %d %v", status, hdr)
	}
	for body, want := range map[string]string{
		`{"redirect_uris":["http://evil.example/cb"]}`:                                                  "invalid_redirect_uri",
		`{"redirect_uris":["https://x.example/cb#frag"]}`:                                               "invalid_redirect_uri",
		`{"redirect_uris":["http://127.0.0.1:9999/cb"],"scope":"admin"}`:                                "invalid_client_metadata",
		`{"redirect_uris":["http://127.0.0.1:9999/cb"],"grant_types":["password"]}`:                     "invalid_client_metadata",
		`{"redirect_uris":["http://127.0.0.1:9999/cb"],"token_endpoint_auth_method":"private_key_jwt"}`: "invalid_client_metadata",
		`{"redirect_uris":"http://127.0.0.1:9999/cb"}`:                                                  "invalid_client_metadata",
		`not json`: "invalid_client_metadata",
	} {
		status, _, out := dcrCall(t, http.MethodPost, reg, dcrToken, body)
		if status != 400 || out["error"] != want {
			t.Errorf("register %s: %d %v, want 400 %s", body, status, out, want)
		}
	}
	if status, body := adminDo(t, dcrAdmin, http.MethodGet, "/oauth2/clients", ""); status != 200 || strings.Contains(body, "dynamic") {
		t.Fatalf("a refused registration was stored: %s", body)
	}

	// A confidential client: scope cut to the policy, skip_consent ignored.
	status, hdr, conf := dcrCall(t, http.MethodPost, reg, dcrToken, good)
	if status != 201 || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("register: %d %v %v", status, hdr, conf)
	}
	for _, f := range []string{"client_id", "client_secret", "client_id_issued_at", "client_secret_expires_at",
		"registration_access_token", "registration_client_uri", "redirect_uris", "grant_types", "token_endpoint_auth_method"} {
		if _, ok := conf[f]; !ok {
			t.Errorf("registration response lacks %s: %v", f, conf)
		}
	}
	if conf["scope"] != "read" || conf["token_endpoint_auth_method"] != "client_secret_basic" || conf["client_name"] != "Agent" ||
		conf["skip_consent"] != nil || fmt.Sprint(conf["contacts"]) != "[ops@example.com]" {
		t.Errorf("registered metadata: %v", conf)
	}
	id, secret := conf["client_id"].(string), conf["client_secret"].(string)
	rat, rcu := conf["registration_access_token"].(string), conf["registration_client_uri"].(string)
	if rcu != reg+"/"+id {
		t.Errorf("registration_client_uri %s", rcu)
	}
	oc := &oauth2.Config{ClientID: id, ClientSecret: secret, RedirectURL: "http://127.0.0.1:9999/cb", Scopes: []string{"read"},
		Endpoint: oauth2.Endpoint{AuthURL: dcrServer + "/oauth2/authorize", TokenURL: dcrServer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	tok := consentFlow(t, oc, "alice"+sfx)
	if code := dcrGuardStatus(t, tok.AccessToken); code != 200 {
		t.Errorf("guard: %d", code)
	}
	refreshed, err := oc.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	// Beyond the policy at the token endpoint: invalid_scope.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshed.RefreshToken}, "scope": {"write"}}
	req, _ := http.NewRequest(http.MethodPost, oc.Endpoint.TokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !bytes.Contains(b, []byte("invalid_scope")) {
			t.Errorf("a scope beyond the registration: %d %s", resp.StatusCode, b)
		}
	}

	// A public client: no secret.
	status, _, pub := dcrCall(t, http.MethodPost, reg, dcrToken,
		`{"redirect_uris":["http://127.0.0.1:9999/cb"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","client_credentials"]}`)
	if status != 201 || pub["client_secret"] != nil || fmt.Sprint(pub["grant_types"]) != "[authorization_code]" || pub["scope"] != "read write" {
		t.Fatalf("public registration: %d %v", status, pub)
	}
	ptok := consentFlow(t, &oauth2.Config{ClientID: pub["client_id"].(string), RedirectURL: "http://127.0.0.1:9999/cb", Scopes: []string{"read"},
		Endpoint: oauth2.Endpoint{AuthURL: dcrServer + "/oauth2/authorize", TokenURL: dcrServer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}, "alice"+sfx)
	if code := dcrGuardStatus(t, ptok.AccessToken); code != 200 {
		t.Errorf("guard, public client: %d", code)
	}

	// RFC 7592: read issues a new registration access token.
	status, _, read := dcrCall(t, http.MethodGet, rcu, rat, "")
	if status != 200 || read["client_id"] != id || read["client_secret"] != nil {
		t.Fatalf("read: %d %v", status, read)
	}
	if status, _, _ := dcrCall(t, http.MethodGet, rcu, rat, ""); status != 401 {
		t.Errorf("the replaced registration access token: %d", status)
	}
	rat = read["registration_access_token"].(string)
	if status, _, _ := dcrCall(t, http.MethodGet, rcu, "crat_"+strings.Repeat("A", 43), ""); status != 401 {
		t.Errorf("a wrong registration access token: %d", status)
	}
	if status, _, _ := dcrCall(t, http.MethodGet, reg+"/"+pub["client_id"].(string), rat, ""); status != 401 {
		t.Errorf("one client's registration access token on another: %d", status)
	}
	// Update: all fields replace; a redirect URI breaking the rules is refused.
	status, _, out = dcrCall(t, http.MethodPut, rcu, rat, `{"client_id":"`+id+`","redirect_uris":["http://localhost/cb"]}`)
	if status != 400 || out["error"] != "invalid_redirect_uri" {
		t.Errorf("update to a bad redirect URI: %d %v", status, out)
	}
	status, _, upd := dcrCall(t, http.MethodPut, rcu, rat, `{"client_id":"`+id+`","client_name":"Agent 2","redirect_uris":["http://127.0.0.1:9999/cb"],"scope":"read"}`)
	if status != 200 || upd["client_name"] != "Agent 2" {
		t.Fatalf("update: %d %v", status, upd)
	}
	rat = upd["registration_access_token"].(string)

	// max_clients: two live, one more fits, the fourth is refused.
	if status, _, out := dcrCall(t, http.MethodPost, reg, dcrToken, `{"redirect_uris":["http://127.0.0.1:9999/cb"]}`); status != 201 {
		t.Fatalf("third registration: %d %v", status, out)
	}
	if status, _, out := dcrCall(t, http.MethodPost, reg, dcrToken, `{"redirect_uris":["http://127.0.0.1:9999/cb"]}`); status != 400 || out["error"] != "invalid_client_metadata" {
		t.Errorf("beyond max_clients: %d %v", status, out)
	}
	// The admin API lists them as dynamic.
	if _, body := adminDo(t, dcrAdmin, http.MethodGet, "/oauth2/clients/"+id, ""); !strings.Contains(body, `"source":"dynamic"`) {
		t.Errorf("admin show: %s", body)
	}

	// Delete: 204, its tokens stop, its registration access token too.
	req, _ = http.NewRequest(http.MethodDelete, rcu, nil)
	req.Header.Set("Authorization", "Bearer "+rat)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if code := dcrGuardStatus(t, tok.AccessToken); code != 401 {
		t.Errorf("guard after delete: %d", code)
	}
	if status, _, _ := dcrCall(t, http.MethodGet, rcu, rat, ""); status != 401 {
		t.Errorf("read after delete: %d", status)
	}
	// Registrations, changes and refusals are counted.
	_, metrics := adminDo(t, dcrAdmin, http.MethodGet, "/metrics", "")
	for _, want := range []string{
		`caddy_oauth2_client_changes_total{op="created",registered_by="dynamic"} 3`,
		`caddy_oauth2_client_changes_total{op="deleted",registered_by="dynamic"}`,
		`caddy_oauth2_registration_refusals_total{reason="invalid_redirect_uri"} 3`,
		`caddy_oauth2_registration_refusals_total{reason="invalid_token"}`,
		`caddy_oauth2_registration_refusals_total{reason="max_clients"} 1`,
		`caddy_oauth2_tokens_issued_total{client_id="(registered)",grant_type="authorization_code"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(p.log.String(), secret[4:]) || strings.Contains(p.log.String(), rat[5:]) || strings.Contains(p.log.String(), tok.AccessToken[4:]) {
		t.Fatal("a secret or token reached Caddy's log")
	}
	if !strings.Contains(p.log.String(), "registered clients are lost when Caddy restarts") && strings.HasPrefix(store, "cache") {
		t.Error("no warning about registration on the cache store")
	}
}

func TestRegisterCache(t *testing.T) { runRegister(t, "cache") }

func TestRegisterSQLite(t *testing.T) {
	runRegister(t, fmt.Sprintf("sql {\n\t\t\tdialect sqlite\n\t\t\tdsn %s\n\t\t\tcreate_schema\n\t\t}", filepath.Join(t.TempDir(), "oauth2.db")))
}

func TestRegisterPostgres(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("OAUTH2_TEST_POSTGRES_DSN is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\"")
	}
	runRegister(t, fmt.Sprintf("sql {\n\t\t\tdialect postgres\n\t\t\tdsn %q\n\t\t\ttable_prefix dcr_\n\t\t\tcreate_schema\n\t\t}", dsn))
}

// TestRegisterOAuth4WebAPI registers a confidential and a public client
// with plain HTTP, then runs the code flow and a refresh for each with
// panva's oauth4webapi (scripts/oauth4webapi.sh), which checks the
// metadata, the RFC 9207 iss and the token responses as a strict client.
func TestRegisterOAuth4WebAPI(t *testing.T) {
	flow := os.Getenv("OAUTH2_TEST_OAUTH4WEBAPI")
	if flow == "" {
		t.Skip("OAUTH2_TEST_OAUTH4WEBAPI is not set: run scripts/oauth4webapi.sh install and eval \"$(scripts/oauth4webapi.sh env)\"")
	}
	http.DefaultClient.CloseIdleConnections()
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	sfx := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(registerConfig("cache", sfx)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCaddyProcess(t, path, 19858, 19859)
	for _, body := range []string{
		`{"client_name":"oauth4webapi","redirect_uris":["http://127.0.0.1:9999/cb"],"scope":"read"}`,
		`{"client_name":"oauth4webapi SPA","redirect_uris":["http://127.0.0.1:9999/cb"],"scope":"read","token_endpoint_auth_method":"none"}`,
	} {
		status, _, c := dcrCall(t, http.MethodPost, dcrServer+"/oauth2/register", dcrToken, body)
		if status != 201 {
			t.Fatalf("register: %d %v", status, c)
		}
		secret, _ := c["client_secret"].(string)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, "node", flow)
		cmd.Env = append(os.Environ(), "FLOW_ISSUER="+dcrServer, "FLOW_CLIENT_ID="+c["client_id"].(string),
			"FLOW_CLIENT_SECRET="+secret, "FLOW_REDIRECT_URI=http://127.0.0.1:9999/cb", "FLOW_SCOPE=read",
			"FLOW_USER=alice"+sfx, "FLOW_PASSWORD=alice-password")
		out, err := cmd.Output()
		cancel()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("oauth4webapi flow (%s): %v\n%s\n%s", body, err, stderr, p.log)
		}
		var res struct {
			AccessToken string `json:"access_token"`
			Refreshed   string `json:"refreshed"`
		}
		if err := json.Unmarshal(out, &res); err != nil || res.Refreshed == "" || res.AccessToken == "" {
			t.Fatalf("oauth4webapi printed %q", out)
		}
		if code := dcrGuardStatus(t, res.Refreshed); code != 200 {
			t.Errorf("guard, oauth4webapi's refreshed token: %d", code)
		}
		if code := dcrGuardStatus(t, res.AccessToken); code != 200 {
			t.Errorf("guard, oauth4webapi's first token: %d", code)
		}
	}
}

func TestRegisterMariaDB(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_MYSQL_DSN")
	if dsn == "" {
		t.Skip("OAUTH2_TEST_MYSQL_DSN is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\"")
	}
	runRegister(t, fmt.Sprintf("sql {\n\t\t\tdialect mysql\n\t\t\tdsn %q\n\t\t\ttable_prefix dcr_\n\t\t\tcreate_schema\n\t\t}", dsn))
}

func TestRegisterCassandra(t *testing.T) {
	hosts := os.Getenv("OAUTH2_TEST_CASSANDRA_HOSTS")
	if hosts == "" {
		t.Skip("OAUTH2_TEST_CASSANDRA_HOSTS is not set: run scripts/cassandra.sh start and eval \"$(scripts/cassandra.sh env)\"")
	}
	runRegister(t, fmt.Sprintf("cassandra {\n\t\t\thosts %s\n\t\t\tkeyspace oauth2_register_test\n\t\t\tcreate_schema\n\t\t\treplication SimpleStrategy 1\n\t\t}",
		strings.ReplaceAll(hosts, ",", " ")))
}
