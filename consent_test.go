package oauth2

// The consent form is single-use through a real Caddy (this test binary
// re-executed, see restart_test.go): a second submission gets an error page
// and no code, on the cache store and, with two gateways sharing one SQLite
// database, between gateways.

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// consentConfig is a Caddyfile for one gateway on port.
func consentConfig(port int, store string) string {
	return fmt.Sprintf(`{
	admin off
	default_bind 127.0.0.1
	http_port %[1]d
	https_port %[2]d
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "consent-test-secret-of-32-bytes-or-more"
		%[3]s
		client web {
			secret_hash %[4]s
			redirect_uri http://127.0.0.1:9999/cb
			scopes read
		}
	}
}
http://127.0.0.1:%[1]d {
	basic_auth {
		alice %[5]s
	}
	oauth2_server
}
`, port, port+40, store, secretHash, aliceHash)
}

var hiddenInputRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)

func TestConsentSingleUseCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(consentConfig(27720, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	startCaddyProcess(t, path, 27720)
	runConsentSingleUse(t, "http://127.0.0.1:27720", "http://127.0.0.1:27720")
}

// TestConsentSingleUseSharedSQLite shows the form is accepted once between
// two gateways that share the code store.
func TestConsentSingleUseSharedSQLite(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "oauth2.db")
	store := fmt.Sprintf(`access_token_store sql {
			dialect sqlite
			dsn %[1]q
			create_schema
		}
		authorization_code_store sql {
			dialect sqlite
			dsn %[1]q
			create_schema
		}`, db)
	for _, port := range []int{27721, 27722} {
		path := filepath.Join(dir, fmt.Sprintf("Caddyfile%d", port))
		if err := os.WriteFile(path, []byte(consentConfig(port, store)), 0o600); err != nil {
			t.Fatal(err)
		}
		startCaddyProcess(t, path, port)
	}
	runConsentSingleUse(t, "http://127.0.0.1:27721", "http://127.0.0.1:27722")
}

// runConsentSingleUse gets a consent form from gateway a, approves it at b,
// then submits it again at a and at b.
func runConsentSingleUse(t *testing.T, a, b string) {
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	do := func(req *http.Request) (*http.Response, string) {
		t.Helper()
		req.SetBasicAuth("alice", "alice-password")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	q := url.Values{"response_type": {"code"}, "client_id": {"web"}, "redirect_uri": {"http://127.0.0.1:9999/cb"}, "state": {"s"}}
	req, _ := http.NewRequest(http.MethodGet, a+"/oauth2/authorize?"+q.Encode(), nil)
	resp, page := do(req)
	if resp.StatusCode != 200 {
		t.Fatalf("consent page: %d %s", resp.StatusCode, page)
	}
	form := url.Values{}
	for _, m := range hiddenInputRE.FindAllStringSubmatch(page, -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	form.Set("decision", "approve")
	submit := func(base string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/oauth2/authorize", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return do(req)
	}
	resp, _ = submit(b)
	if loc, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("first submission: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, base := range []string{a, b} {
		resp, body := submit(base)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" || !strings.Contains(body, "already") {
			t.Errorf("second submission at %s: %d, Location %q, want 403 and no code", base, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}
