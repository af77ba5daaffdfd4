package oauth2

// Item 3 of issue 8: no code, token, secret or PKCE verifier in any of
// Caddy's logs, with access logs and DEBUG logging on, through every
// endpoint, over HTTP/1.1 and HTTP/2 (h2c), and through the `encode`
// handler, which holds back the status line until the body is written.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"golang.org/x/oauth2"
)

// logTestConfig is testConfig with JSON logs to files in dir: the default
// logger at DEBUG, and an access log on the server site and on the API site.
func logTestConfig(upstreamAddr, dir string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	default_bind 127.0.0.1
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	servers {
		protocols h1 h2c
	}
	log {
		output file %[1]s/default.log
		format json
		level DEBUG
	}
	oauth2 {
		purge_every 1s
		registration {
			open
			scopes read
		}
		client svc {
			secret_hash %[2]s
			redirect_uri http://127.0.0.1:9999/cb
			grant_types authorization_code refresh_token client_credentials
			scopes read write
		}
		client app {
			redirect_uri http://127.0.0.1:9999/cb
			scopes read write
			skip_consent
		}
	}
}
http://localhost:9080 {
	log {
		output file %[1]s/auth-access.log
		format json
		level DEBUG
	}
	encode gzip
	handle /oauth2/authorize {
		basic_auth {
			alice %[3]s
		}
		oauth2_server
	}
	oauth2_server
}
http://localhost:9081 {
	log {
		output file %[1]s/api-access.log
		format json
		level DEBUG
	}
	oauth2_guard read
	reverse_proxy %[4]s
}
`, dir, secretHash, aliceHash, upstreamAddr)
}

// h2cClient speaks HTTP/2 without TLS (prior knowledge), as Caddy's h2c does.
func h2cClient() *http.Client {
	tr := &http.Transport{}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestNoSecretsInLogs(t *testing.T) {
	up := newUpstream(t)
	dir := t.TempDir()
	startCaddy(t, logTestConfig(up.Listener.Addr().String(), dir))
	ctx := context.Background()
	var secrets []string // every raw value that must not appear in any log

	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			if proto == "HTTP/2.0" {
				client = h2cClient()
			}
			hctx := context.WithValue(ctx, oauth2.HTTPClient, client)
			cfg := &oauth2.Config{
				ClientID:     "svc",
				ClientSecret: "s3cret",
				Endpoint:     oauth2.Endpoint{AuthURL: authBase + "/oauth2/authorize", TokenURL: authBase + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
				RedirectURL:  "http://127.0.0.1:9999/cb",
				Scopes:       []string{"read"},
			}
			verifier := oauth2.GenerateVerifier()
			secrets = append(secrets, verifier)

			// Authorize: the consent page, then its submission redirects with the code.
			req, _ := http.NewRequest(http.MethodGet, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), nil)
			req.SetBasicAuth("alice", "alice-password")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			page := readAll(resp)
			if resp.Proto != proto {
				t.Fatalf("spoke %s, want %s", resp.Proto, proto)
			}
			resp = submitConsent(t, client, page, true)
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("consent answered %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			code := loc.Query().Get("code")
			if !strings.HasPrefix(code, "cac_") {
				t.Fatalf("the client got no usable code: %s", loc)
			}
			secrets = append(secrets, code)

			// Token, refresh, guard, introspect, revoke.
			tok, err := cfg.Exchange(hctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange of the redirected code: %v", err)
			}
			secrets = append(secrets, tok.AccessToken, tok.RefreshToken)
			stale := *tok
			stale.Expiry = time.Now().Add(-time.Minute)
			fresh, err := cfg.TokenSource(hctx, &stale).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			secrets = append(secrets, fresh.AccessToken, fresh.RefreshToken)
			if resp, _ := get(t, client, apiBase+"/me", fresh.AccessToken); resp.StatusCode != 200 {
				t.Fatalf("guard: %d", resp.StatusCode)
			}
			up.last(t)
			// A wrong token is refused and logged without the token.
			if resp, _ := get(t, client, apiBase+"/me", "cat_"+strings.Repeat("Z", 43)); resp.StatusCode != 401 {
				t.Fatalf("guard with an unknown token: %d", resp.StatusCode)
			}
			for _, ep := range []string{"/oauth2/introspect", "/oauth2/revoke"} {
				form := url.Values{"token": {fresh.RefreshToken}, "client_id": {"svc"}, "client_secret": {"s3cret"}}
				req, _ := http.NewRequest(http.MethodPost, authBase+ep, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				readAll(resp)
				if resp.StatusCode != 200 {
					t.Fatalf("%s: %d", ep, resp.StatusCode)
				}
			}
		})
	}
	if t.Failed() {
		return
	}

	// Runtime clients: a self-registered client's secret and registration
	// access tokens, an admin-made client's secret and its rotation.
	_, _, reg := dcrCall(t, http.MethodPost, authBase+"/oauth2/register", "", `{"redirect_uris":["http://127.0.0.1:9999/cb"]}`)
	rat, _ := reg["registration_access_token"].(string)
	dsecret, _ := reg["client_secret"].(string)
	if rat == "" || dsecret == "" {
		t.Fatalf("registration: %v", reg)
	}
	_, _, read := dcrCall(t, http.MethodGet, reg["registration_client_uri"].(string), rat, "")
	rat2, _ := read["registration_access_token"].(string)
	if rat2 == "" {
		t.Fatalf("RFC 7592 read: %v", read)
	}
	if status, _, _ := dcrCall(t, http.MethodGet, reg["registration_client_uri"].(string), rat, ""); status != 401 {
		t.Fatalf("a replaced registration access token: %d", status)
	}
	_, body := adminDo(t, "localhost:2999", http.MethodPost, "/oauth2/clients",
		`{"client_id":"logged","client_secret":"operator-chosen-secret","grant_types":["client_credentials"],"scope":"read"}`)
	if !strings.Contains(body, "operator-chosen-secret") {
		t.Fatalf("admin create: %s", body)
	}
	_, body = adminDo(t, "localhost:2999", http.MethodPost, "/oauth2/clients/logged/secret", `{"grace":"1h"}`)
	i := strings.Index(body, "ccs_")
	if i < 0 {
		t.Fatalf("admin rotate: %s", body)
	}
	secrets = append(secrets, rat, rat2, dsecret, "operator-chosen-secret", body[i:i+47])

	time.Sleep(200 * time.Millisecond) // the access log is written after the response
	secrets = append(secrets, "s3cret", "alice-password")
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(files) != 3 {
		t.Fatalf("log files %v, want default, auth-access and api-access", files)
	}
	var sawRedirect bool
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if strings.Contains(text, `"Location":["http://127.0.0.1:9999/cb?code=REDACTED`) {
			sawRedirect = true
		}
		for _, bad := range append([]string{"cac_", "cat_", "crt_", "ccs_", "crat_"}, secrets...) {
			if bad == "" {
				continue
			}
			if i := strings.Index(text, bad); i >= 0 {
				line := text[strings.LastIndex(text[:i], "\n")+1:]
				if j := strings.IndexByte(line, '\n'); j >= 0 {
					line = line[:j]
				}
				t.Errorf("%s leaks %.8s…: %s", filepath.Base(f), bad, line)
			}
		}
	}
	if !sawRedirect {
		t.Error("no access log entry shows the redacted redirect: is the access log on?")
	}
}

func readAll(resp *http.Response) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	return b.String()
}

// TestNoCodeInLogsTLS runs the authorization redirect on a TLS site over
// HTTP/3 and HTTP/2: the client gets a code that redeems, the access log
// only REDACTED. HTTP/3 (quic-go) writes the header at the first flush, not
// at WriteHeader, so this checks that the flush reaches it.
func TestNoCodeInLogsTLS(t *testing.T) {
	dir := t.TempDir()
	startCaddy(t, fmt.Sprintf(`{
	admin localhost:2999
	default_bind 127.0.0.1
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	oauth2 {
		client app {
			redirect_uri http://127.0.0.1:9999/cb
			scopes read
			skip_consent
		}
	}
}
https://localhost:9443 {
	tls internal
	log {
		output file %[1]s/tls-access.log
		format json
	}
	handle /oauth2/authorize {
		basic_auth {
			alice %[2]s
		}
		oauth2_server
	}
	oauth2_server
}
`, dir, aliceHash))
	tlsConf := &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	clients := map[string]*http.Client{
		"HTTP/3.0": {CheckRedirect: noRedirect, Transport: &http3.Transport{TLSClientConfig: tlsConf}},
		"HTTP/2.0": {CheckRedirect: noRedirect, Transport: &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}},
	}
	base := "https://127.0.0.1:9443"
	for _, proto := range []string{"HTTP/2.0", "HTTP/3.0"} {
		client := clients[proto]
		verifier := oauth2.GenerateVerifier()
		cfg := &oauth2.Config{ClientID: "app", RedirectURL: "http://127.0.0.1:9999/cb",
			Endpoint: oauth2.Endpoint{AuthURL: base + "/oauth2/authorize", TokenURL: base + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
		req, _ := http.NewRequest(http.MethodGet, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), nil)
		req.Host = "localhost:9443"
		req.SetBasicAuth("alice", "alice-password")
		var resp *http.Response
		var err error
		for try := 0; try < 50; try++ { // the internal certificate is issued in the background
			if resp, err = client.Do(req); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		readAll(resp)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.Proto != proto || resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.Query().Get("code"), "cac_") {
			t.Fatalf("%s: %s %d %s", proto, resp.Proto, resp.StatusCode, loc)
		}
		form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "client_id": {"app"},
			"redirect_uri": {"http://127.0.0.1:9999/cb"}, "code_verifier": {verifier}}
		req, _ = http.NewRequest(http.MethodPost, base+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Host = "localhost:9443"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, err = client.Do(req); err != nil {
			t.Fatal(err)
		}
		if body := readAll(resp); resp.StatusCode != 200 {
			t.Fatalf("%s: redeeming the redirected code: %d %s", proto, resp.StatusCode, body)
		}
	}
	time.Sleep(200 * time.Millisecond)
	b, err := os.ReadFile(filepath.Join(dir, "tls-access.log"))
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	for _, proto := range []string{"HTTP/2.0", "HTTP/3.0"} {
		if !strings.Contains(log, `"proto":"`+proto+`"`) {
			t.Errorf("no %s request in the access log", proto)
		}
	}
	if n := strings.Count(log, "code=REDACTED"); n != 2 {
		t.Errorf("%d redacted redirects in the access log, want 2", n)
	}
	for _, bad := range []string{"cac_", "cat_", "crt_"} {
		if strings.Contains(log, bad) {
			t.Errorf("the access log leaks %s", bad)
		}
	}
}
