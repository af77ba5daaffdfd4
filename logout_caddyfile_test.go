package oauth2

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestCaddyfilePostLogoutRedirectURI checks the client option of
// RP-initiated logout and its errors.
func TestCaddyfilePostLogoutRedirectURI(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`oauth2 {
		oidc
		client rp {
			redirect_uri https://rp.example/cb
			post_logout_redirect_uri https://rp.example/bye http://127.0.0.1/bye com.example.app:/bye
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(a.Clients[0].PostLogoutRedirectURIs)
	if want := `["https://rp.example/bye","http://127.0.0.1/bye","com.example.app:/bye"]`; string(got) != want {
		t.Errorf("post_logout_redirect_uris = %s, want %s", got, want)
	}
	for input, want := range map[string]string{
		"oauth2 {\n client a {\n  redirect_uri https://a.example/cb\n  post_logout_redirect_uri\n }\n}":                                 "Testfile:4",
		"oauth2 {\n client a {\n  redirect_uri https://a.example/cb\n  post_logout_redirect_uri http://evil.example/bye\n }\n}":         `post-logout redirect URI "http://evil.example/bye": http is allowed only on the loopback IPs`,
		"oauth2 {\n client a {\n  redirect_uri https://a.example/cb\n  post_logout_redirect_uri https://a.example/#x\n }\n}":            "must have no fragment",
		"oauth2 {\n client a {\n  redirect_uri https://a.example/cb\n  post_logout_redirect_uri javascript:alert(1)\n }\n}":             "not allowed",
		"oauth2 {\n client a {\n  redirect_uri https://a.example/cb\n  post_logout_redirect_uri a\n  post_logout_redirect_uri b\n }\n}": "duplicate subdirective",
	} {
		err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
	}
}
