package oauth2

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestRedirectURIRulesAtLoad checks that Caddy refuses to load (as `caddy
// validate` and `caddy run` do) a client with a redirect URI that breaks
// the registration rules, naming the client and the URI.
func TestRedirectURIRulesAtLoad(t *testing.T) {
	load := func(uri string) error {
		cf := fmt.Sprintf(`{
	admin off
	oauth2 {
		client native {
			redirect_uri https://ok.example/cb %s
			scopes read
		}
	}
}
http://127.0.0.1:27740 {
	oauth2_server
}
`, uri)
		raw, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
		if err != nil {
			t.Fatalf("adapt %s: %v", uri, err)
		}
		var cfg caddy.Config
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		return caddy.Validate(&cfg)
	}
	for _, uri := range []string{"http://localhost:8080/cb", "javascript:alert(1)", "https://*.example.com/cb", "https://u:p@app.example/cb", "myapp:/cb"} {
		err := load(uri)
		if err == nil {
			t.Errorf("%s: configuration loaded", uri)
			continue
		}
		if !strings.Contains(err.Error(), `client "native"`) || !strings.Contains(err.Error(), fmt.Sprintf("%q", uri)) {
			t.Errorf("%s: error %q does not name the client and the URI", uri, err)
		}
	}
	for _, uri := range []string{"http://127.0.0.1:8765/cb", "http://[::1]/cb", "com.example.app:/cb", "https://app.example/cb"} {
		if err := load(uri); err != nil {
			t.Errorf("%s: %v", uri, err)
		}
	}
}
