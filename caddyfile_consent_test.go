package oauth2

import (
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalConsentOptions(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`oauth2 {
		scope_description read "Read your data"
		scope_description write "Change your data"
		consent_template /etc/caddy/consent.html
		client app {
			redirect_uri http://127.0.0.1/cb
			name "My App"
			logo_uri https://app.example/logo.png
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"read": "Read your data", "write": "Change your data"}; !reflect.DeepEqual(a.ScopeDescriptions, want) {
		t.Errorf("scope descriptions %v", a.ScopeDescriptions)
	}
	if a.ConsentTemplate != "/etc/caddy/consent.html" || a.Clients[0].Name != "My App" || a.Clients[0].LogoURI != "https://app.example/logo.png" {
		t.Errorf("parsed %+v %+v", a, a.Clients[0])
	}
	for input, want := range map[string]string{
		"oauth2 {\n scope_description read\n}":                              "scope_description takes a scope and its description, got 1 arguments, at Testfile:2",
		"oauth2 {\n scope_description read a\n scope_description read b\n}": `scope_description of "read" given twice, at Testfile:3`,
		"oauth2 {\n consent_template\n}":                                    "Testfile:2",
		"oauth2 {\n client a {\n  name\n }\n}":                              "Testfile:3",
	} {
		err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
	}
}
