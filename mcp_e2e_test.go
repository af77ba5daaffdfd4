package oauth2

// Protecting MCP servers: the official MCP TypeScript SDK
// (@modelcontextprotocol/sdk, scripts/mcp-sdk.sh) as both the MCP servers,
// behind oauth2_guard with a resource, and the client, whose own auth()
// flow discovers everything from the 401 (RFC 9728), registers itself
// (RFC 7591), presents a pre-registered client ID or a client ID metadata
// document, runs PKCE with resource (RFC 8707), refreshes, and is stopped
// by revocation. Ports 19871-19873 (Caddy), 19881-19882 (the MCP servers),
// admin 127.0.0.1:2398.

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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
	mcpAS       = "http://127.0.0.1:19871"
	mcpA        = "http://127.0.0.1:19872/mcp"
	mcpB        = "http://127.0.0.1:19873/mcp"
	mcpRedirect = "http://127.0.0.1:19899/callback"
)

func mcpConfig(rootCA, sfx string) string {
	return `{
	admin 127.0.0.1:2398
	default_bind 127.0.0.1
	http_port 19871
	https_port 19874
	auto_https off
	grace_period 1s
	persist_config off
	oauth2 {
		issuer ` + mcpAS + `
		token_secret "mcp-e2e-test-secret-of-at-least-32-bytes"
		registration {
			open
			scopes mcp:tools
		}
		client_id_metadata_documents {
			scopes mcp:tools
			allow_private_addresses
			root_ca ` + rootCA + `
		}
		client mcp-preregistered {
			redirect_uri ` + mcpRedirect + `
			scopes mcp:tools
		}
	}
}
http://127.0.0.1:19871 {
	handle /oauth2/authorize {
		basic_auth {
			alice` + sfx + ` ` + aliceHash + `
		}
		oauth2_server
	}
	oauth2_server
}
http://127.0.0.1:19872 {
	oauth2_guard {
		resource ` + mcpA + `
		resource_name "Tools A"
		scopes mcp:tools
	}
	reverse_proxy 127.0.0.1:19881 {
		header_up X-User {http.auth.user.id}
	}
}
http://127.0.0.1:19873 {
	oauth2_guard {
		resource ` + mcpB + `
		scopes mcp:tools
	}
	reverse_proxy 127.0.0.1:19882
}
`
}

// mcpResult is what scripts/mcp-sdk/mcp.mjs client prints.
type mcpResult struct {
	Transcript           []string `json:"transcript"`
	Tools                []string `json:"tools"`
	Call                 string   `json:"call"`
	ConsentShowsResource bool     `json:"consentShowsResource"`
	ConsentShowsHost     bool     `json:"consentShowsHost"`
	ClientID             string   `json:"clientID"`
	Refresh              string   `json:"refresh"`
	Refreshed            bool     `json:"refreshed"`
	AfterRefresh         string   `json:"afterRefresh"`
	OtherStatus          int      `json:"otherStatus"`
	OtherChallenge       string   `json:"otherChallenge"`
	AfterRevoke          string   `json:"afterRevoke"`
}

func TestMCPSDK(t *testing.T) {
	dir := os.Getenv("OAUTH2_TEST_MCP_SDK")
	if dir == "" {
		t.Skip("OAUTH2_TEST_MCP_SDK is not set: run scripts/mcp-sdk.sh install and eval \"$(scripts/mcp-sdk.sh env)\"")
	}
	script := filepath.Join(dir, "mcp.mjs")
	http.DefaultClient.CloseIdleConnections()
	t.Cleanup(http.DefaultClient.CloseIdleConnections)

	// The client ID metadata document, over https on loopback.
	docs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mismatch.json" {
			fmt.Fprintf(w, `{"client_id":"https://%s/other.json","redirect_uris":[%q]}`, r.Host, mcpRedirect)
			return
		}
		if r.URL.Path != "/mcp-client.json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, `{"client_id":"https://%s/mcp-client.json","client_name":"MCP CIMD client","redirect_uris":[%q],
			"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}`, r.Host, mcpRedirect)
	}))
	t.Cleanup(docs.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: docs.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	for i, name := range []string{"server-a", "server-b"} {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, "node", script, "server", fmt.Sprint(19881+i), name)
		cmd.Stderr = os.Stderr
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); _ = cmd.Wait() })
		line := make([]byte, 64)
		if n, _ := out.Read(line); !strings.HasPrefix(string(line[:n]), "listening") {
			t.Fatalf("MCP server %s: %q", name, line[:n])
		}
		go func() { _, _ = io.Copy(io.Discard, out) }()
	}

	sfx := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(mcpConfig(ca, sfx)), 0o600); err != nil {
		t.Fatal(err)
	}
	startCaddyProcess(t, path, 19871, 19872, 19873)

	// The guard's metadata document, without a token, and its challenge.
	resp, err := http.Get("http://127.0.0.1:19872/.well-known/oauth-protected-resource/mcp")
	if err != nil {
		t.Fatal(err)
	}
	var prm map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&prm)
	resp.Body.Close()
	if resp.StatusCode != 200 || prm["resource"] != mcpA || prm["resource_name"] != "Tools A" ||
		fmt.Sprint(prm["authorization_servers"]) != "["+mcpAS+"]" || fmt.Sprint(prm["scopes_supported"]) != "[mcp:tools]" ||
		resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("protected resource metadata: %d %v %v", resp.StatusCode, resp.Header, prm)
	}
	resp, err = http.Post(mcpA, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := `Bearer realm="api", resource_metadata="http://127.0.0.1:19872/.well-known/oauth-protected-resource/mcp", scope="mcp:tools"`
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("401 without a token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	mcpRefusals(t, sfx, docs.URL)

	for _, tc := range []struct {
		name, clientID, metadataURL string
	}{
		{"dynamic registration", "", ""},
		{"pre-registered client", "mcp-preregistered", ""},
		{"client ID metadata document", "", docs.URL + "/mcp-client.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", script, "client")
			cmd.Env = append(os.Environ(), "MCP_URL="+mcpA, "MCP_OTHER_URL="+mcpB, "MCP_USER=alice"+sfx, "MCP_PASSWORD=alice-password",
				"MCP_CLIENT_ID="+tc.clientID, "MCP_CLIENT_METADATA_URL="+tc.metadataURL, "MCP_REDIRECT_URI="+mcpRedirect,
				"MCP_REVOKE_URL="+mcpAS+"/oauth2/revoke", "MCP_RESOURCE_NAME=Tools A")
			out, err := cmd.Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				t.Fatalf("mcp client: %v\n%s\n%s", err, out, stderr)
			}
			var r mcpResult
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("mcp client output: %v\n%s", err, out)
			}
			t.Logf("transcript:\n%s", strings.Join(r.Transcript, "\n"))
			if fmt.Sprint(r.Tools) != "[echo]" || r.Call != "server-a: hello (user alice"+sfx+")" {
				t.Errorf("tools %v, call %q", r.Tools, r.Call)
			}
			if !r.ConsentShowsResource {
				t.Errorf("the consent page does not name the resource")
			}
			switch {
			case tc.clientID != "" && r.ClientID != tc.clientID,
				tc.metadataURL != "" && (r.ClientID != tc.metadataURL || !r.ConsentShowsHost),
				tc.clientID == "" && tc.metadataURL == "" && (r.ClientID == "" || strings.HasPrefix(r.ClientID, "https://")):
				t.Errorf("client_id %q (consent names the document host: %v)", r.ClientID, r.ConsentShowsHost)
			}
			if r.Refresh != "AUTHORIZED" || !r.Refreshed || r.AfterRefresh != "server-a: again (user alice"+sfx+")" {
				t.Errorf("refresh: %q refreshed=%v then %q", r.Refresh, r.Refreshed, r.AfterRefresh)
			}
			if r.OtherStatus != 401 || !strings.Contains(r.OtherChallenge, `error="invalid_token"`) ||
				!strings.Contains(r.OtherChallenge, `resource_metadata="http://127.0.0.1:19873/.well-known/oauth-protected-resource/mcp"`) {
				t.Errorf("server B with server A's token: %d %q", r.OtherStatus, r.OtherChallenge)
			}
			if r.AfterRevoke == "passed" || !containsLine(r.Transcript, "POST "+mcpA+" 401") {
				t.Errorf("after revocation: %q", r.AfterRevoke)
			}
			for _, step := range []string{
				"GET http://127.0.0.1:19872/.well-known/oauth-protected-resource/mcp 200",
				"GET " + mcpAS + "/.well-known/oauth-authorization-server 200",
				"GET " + mcpAS + "/oauth2/authorize 200",
				"POST " + mcpAS + "/oauth2/authorize 303",
				"POST " + mcpAS + "/oauth2/token 200",
			} {
				if !containsLine(r.Transcript, step) {
					t.Errorf("the transcript lacks %q", step)
				}
			}
			if dcr := containsLine(r.Transcript, "POST "+mcpAS+"/oauth2/register 201"); dcr != (tc.clientID == "" && tc.metadataURL == "") {
				t.Errorf("dynamic registration in the transcript: %v", dcr)
			}
		})
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// mcpRefusals checks, through Caddy, the refusals of resources and of a
// metadata document that does not name itself.
func mcpRefusals(t *testing.T, sfx, docsURL string) {
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := oauth2.GenerateVerifier()
	authorize := func(clientID string, resource string) (*http.Response, string) {
		q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {mcpRedirect}, "state": {"st"},
			"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}, "resource": {resource}}
		req, _ := http.NewRequest(http.MethodGet, mcpAS+"/oauth2/authorize?"+q.Encode(), nil)
		req.SetBasicAuth("alice"+sfx, "alice-password")
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	// An unknown resource at the authorization endpoint: invalid_target.
	resp, _ := authorize("mcp-preregistered", "https://unknown.example/mcp")
	if loc, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != 302 || loc.Query().Get("error") != "invalid_target" {
		t.Errorf("unknown resource at authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A metadata document whose client_id is another URL: invalid_client,
	// on the page, never redirected.
	resp, page := authorize(docsURL+"/mismatch.json", mcpA)
	if resp.StatusCode != 400 || !strings.Contains(page, "invalid_client") || resp.Header.Get("Location") != "" {
		t.Errorf("mismatched document: %d %q %.300s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	mresp, err := http.Get("http://127.0.0.1:2398/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(metrics), `caddy_oauth2_client_metadata_document_failures_total{reason="mismatch"} 1`) {
		t.Errorf("the refused document is not counted")
	}
	// A code for server A may not be redeemed for server B, nor for an
	// unknown resource; for A it may.
	code := func() string {
		resp, page := authorize("mcp-preregistered", mcpA)
		if resp.StatusCode != 200 || !strings.Contains(page, "Tools A") {
			t.Fatalf("consent page: %d %.500s", resp.StatusCode, page)
		}
		form := url.Values{}
		for _, m := range hiddenInputRE.FindAllStringSubmatch(page, -1) {
			form.Add(htmlUnescape(m[1]), htmlUnescape(m[2]))
		}
		form.Set("decision", "approve")
		req, _ := http.NewRequest(http.MethodPost, mcpAS+"/oauth2/authorize", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("alice"+sfx, "alice-password")
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		return loc.Query().Get("code")
	}
	for _, tc := range []struct {
		resource string
		status   int
	}{{mcpB, 400}, {"https://unknown.example/mcp", 400}, {mcpA, 200}} {
		resp, body := mcpToken(t, url.Values{"grant_type": {"authorization_code"}, "code": {code()},
			"client_id": {"mcp-preregistered"}, "redirect_uri": {mcpRedirect}, "code_verifier": {verifier}, "resource": {tc.resource}})
		if resp.StatusCode != tc.status || tc.status == 400 && body["error"] != "invalid_target" {
			t.Errorf("token for %s with a code for A: %d %v", tc.resource, resp.StatusCode, body)
		}
		if tc.status != 200 {
			continue
		}
		// A refresh may not widen the audience to server B.
		resp, body = mcpToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)},
			"client_id": {"mcp-preregistered"}, "resource": {mcpB}})
		if resp.StatusCode != 400 || body["error"] != "invalid_target" {
			t.Errorf("widening refresh: %d %v", resp.StatusCode, body)
		}
	}
}

// mcpToken posts form to the token endpoint.
func mcpToken(t *testing.T, form url.Values) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(mcpAS+"/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp, body
}

// The resources guards add are those of the configuration in force: a
// reload that drops a guard drops its resource. With JWT access tokens, the
// guard admits a JWT for its resource only. Ports 19875-19876, admin
// 127.0.0.1:2399.
func TestGuardResourcesFollowReload(t *testing.T) {
	http.DefaultClient.CloseIdleConnections()
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	config := func(resource string) string {
		return `{
	admin 127.0.0.1:2399
	default_bind 127.0.0.1
	http_port 19875
	https_port 19877
	auto_https off
	grace_period 1s
	persist_config off
	oauth2 {
		issuer http://127.0.0.1:19875
		token_secret "reload-e2e-test-secret-of-at-least-32-bytes"
		access_token_format jwt
		client app {
			redirect_uri ` + mcpRedirect + `
			skip_consent
		}
	}
}
http://127.0.0.1:19875 {
	handle /oauth2/authorize {
		basic_auth {
			alice ` + aliceHash + `
		}
		oauth2_server
	}
	oauth2_server
}
http://127.0.0.1:19876 {
	oauth2_guard {
		resource ` + resource + `
	}
	respond ok
}
`
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(config("http://127.0.0.1:19876/one")), 0o600); err != nil {
		t.Fatal(err)
	}
	startCaddyProcess(t, path, 19875, 19876)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := oauth2.GenerateVerifier()
	var lastCode string
	outcome := func(resource string) string {
		q := url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {mcpRedirect},
			"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
		if resource != "" {
			q.Set("resource", resource)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:19875/oauth2/authorize?"+q.Encode(), nil)
		req.SetBasicAuth("alice", "alice-password")
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if lastCode = loc.Query().Get("code"); lastCode != "" {
			return "code"
		}
		return loc.Query().Get("error")
	}
	if a, b := outcome("http://127.0.0.1:19876/one"), outcome("http://127.0.0.1:19876/two"); a != "code" || b != "invalid_target" {
		t.Fatalf("before the reload: one %q, two %q", a, b)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:2399/load", strings.NewReader(config("http://127.0.0.1:19876/two")))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reload: %d %s", resp.StatusCode, b)
	}
	if a, b := outcome("http://127.0.0.1:19876/one"), outcome("http://127.0.0.1:19876/two"); a != "invalid_target" || b != "code" {
		t.Errorf("after the reload: one %q, two %q", a, b)
	}
	guard := func(resource string) (int, string) {
		if outcome(resource) != "code" {
			t.Fatalf("no code for %q", resource)
		}
		resp, err := http.PostForm("http://127.0.0.1:19875/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {lastCode},
			"client_id": {"app"}, "redirect_uri": {mcpRedirect}, "code_verifier": {verifier}})
		if err != nil {
			t.Fatal(err)
		}
		var tok map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&tok)
		resp.Body.Close()
		access, _ := tok["access_token"].(string)
		if strings.Count(access, ".") != 2 {
			t.Fatalf("not a JWT: %v", tok)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:19876/two", nil)
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	if status, _ := guard("http://127.0.0.1:19876/two"); status != 200 {
		t.Errorf("a JWT for the guard's resource: %d", status)
	}
	if status, challenge := guard(""); status != 401 || !strings.Contains(challenge, `error="invalid_token"`) ||
		!strings.Contains(challenge, `resource_metadata="http://127.0.0.1:19876/.well-known/oauth-protected-resource/two"`) {
		t.Errorf("a JWT for the default audience: %d %q", status, challenge)
	}
}
