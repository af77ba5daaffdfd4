package oauth2

// Introspection is authorized through a real Caddy (this test binary
// re-executed, see restart_test.go): the Caddyfile's introspect flag
// reaches the server.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIntrospectFlag(t *testing.T) {
	cf := fmt.Sprintf(`{
	admin off
	default_bind 127.0.0.1
	http_port 27730
	https_port 27731
	grace_period 1s
	persist_config off
	oauth2 {
		client svc {
			secret_hash %[1]s
			grant_types client_credentials
			scopes read
		}
		client other {
			secret_hash %[1]s
			grant_types client_credentials
			scopes read
		}
		client rs {
			secret_hash %[1]s
			grant_types client_credentials
			introspect
		}
	}
}
http://127.0.0.1:27730 {
	oauth2_server
}
`, secretHash)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	startCaddyProcess(t, path, 27730)
	post := func(endpoint, client string, form url.Values) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:27730"+endpoint, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(client, "s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s as %s: %d %v", endpoint, client, resp.StatusCode, err)
		}
		return m
	}
	tok := post("/oauth2/token", "svc", url.Values{"grant_type": {"client_credentials"}})["access_token"].(string)
	for client, active := range map[string]bool{"svc": true, "rs": true, "other": false} {
		m := post("/oauth2/introspect", client, url.Values{"token": {tok}})
		if m["active"] != active || !active && len(m) != 1 {
			t.Errorf("%s introspecting svc's token: %v, want active=%v", client, m, active)
		}
	}
}
