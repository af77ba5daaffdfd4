package oauth2

import (
	"net/url"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalMaxSecretVerifications(t *testing.T) {
	a := new(App)
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`oauth2 {
		max_secret_verifications 3
	}`)); err != nil || a.MaxSecretVerifications != 3 {
		t.Fatalf("got %d, %v", a.MaxSecretVerifications, err)
	}
	for _, bad := range []string{
		"oauth2 {\n max_secret_verifications\n}",
		"oauth2 {\n max_secret_verifications 0\n}",
		"oauth2 {\n max_secret_verifications two\n}",
		"oauth2 {\n max_secret_verifications 1 2\n}",
		"oauth2 {\n max_secret_verifications 1\n max_secret_verifications 2\n}",
	} {
		if err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestBruteForceThroughCaddy: wrong secrets through a real Caddy lock the
// client after five failures; the right secret is then refused too, with
// Retry-After, and no bcrypt runs.
func TestBruteForceThroughCaddy(t *testing.T) {
	startCaddy(t, testConfig(newUpstream(t).Listener.Addr().String(), "max_secret_verifications 1", ""))
	cc := url.Values{"grant_type": {"client_credentials"}}
	for range 5 {
		if resp, body := postForm(t, "/oauth2/token", cc, "svc", "wrong"); resp.StatusCode != 401 || body["error"] != "invalid_client" {
			t.Fatalf("wrong secret: %d %v", resp.StatusCode, body)
		}
	}
	start := time.Now()
	for range 20 {
		resp, body := postForm(t, "/oauth2/token", cc, "svc", "wrong")
		if resp.StatusCode != 429 || body["error"] != "temporarily_unavailable" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("locked: %d %v %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("20 refusals took %v", d)
	}
	if resp, _ := postForm(t, "/oauth2/token", cc, "svc", "s3cret"); resp.StatusCode != 429 {
		t.Fatalf("right secret while locked: %d", resp.StatusCode)
	}
}
