package oauth2

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
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

func TestPlaceholderSecretHashParses(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2 {\n client svc {\n  secret_hash {env.SVC_HASH}\n  grant_types client_credentials\n }\n}"))
	if err != nil {
		t.Fatalf("a placeholder secret_hash is checked when Caddy provisions, not while parsing: %v", err)
	}
}

// TestConfigErrorIsTheSameEveryRun: Caddy loads its apps in random order;
// a config whose oauth2 app fails must give the same message every time,
// not one wrapped by whichever handler happened to load the app first.
func TestConfigErrorIsTheSameEveryRun(t *testing.T) {
	for _, c := range []struct{ app, want string }{
		// Provision refuses it.
		{`{"token_secret": "short", "clients": [{"id": "svc", "secret_hash": "` + secretHash + `", "grant_types": ["client_credentials"]}]}`,
			"token_secret must be at least 32 bytes"},
		// Validate refuses it.
		{`{"clients": [{"id": "app", "redirect_uris": ["javascript:alert(1)"]}]}`, `redirect URI "javascript:alert(1)"`},
	} {
		sameErrorEveryRun(t, c.app, c.want)
	}
}

func sameErrorEveryRun(t *testing.T, app, want string) {
	conf := `{"apps": {
		"oauth2": ` + app + `,
		"http": {"servers": {"s": {"listen": ["127.0.0.1:19680"], "routes": [
			{"handle": [{"handler": "oauth2_guard"}]},
			{"handle": [{"handler": "oauth2_server"}]}]}}}}}`
	path := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var first string
	for i := range 8 {
		_, errs, code := caddyCLI(t, "", "validate", "--config", path)
		msg := ""
		for _, l := range strings.Split(errs, "\n") {
			var entry struct{ Level, Msg string }
			if json.Unmarshal([]byte(l), &entry) == nil && entry.Level == "error" {
				msg = entry.Msg
			} else if strings.HasPrefix(l, "Error:") {
				msg = l
			}
		}
		if code == 0 || !strings.Contains(msg, want) {
			t.Fatalf("run %d: exit %d, %q", i, code, errs)
		}
		if i == 0 {
			first = msg
		} else if msg != first {
			t.Fatalf("run %d said\n%s\nrun 0 said\n%s", i, msg, first)
		}
	}
	t.Log(first)
}

func TestUnmarshalJWTOptions(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`oauth2 {
		access_token_format jwt
		audience https://api.example
		signing_key /keys/new.pem
		signing_key /keys/old.pem
		signing_key_rotation 240h
		jwt_revocation_check 10s
		client svc {
			secret_hash ` + secretHash + `
			grant_types client_credentials
			resources https://orders.example https://billing.example
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.AccessTokenFormat != "jwt" || a.Audience != "https://api.example" ||
		!reflect.DeepEqual(a.SigningKeys, []string{"/keys/new.pem", "/keys/old.pem"}) ||
		a.SigningKeyRotation != caddy.Duration(240*time.Hour) || a.JWTRevocationCheck != caddy.Duration(10*time.Second) ||
		!reflect.DeepEqual(a.Clients[0].Resources, []string{"https://orders.example", "https://billing.example"}) {
		t.Errorf("parsed %+v %+v", a, a.Clients[0])
	}
	var g Guard
	if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2_guard read {\n audience https://a.example https://b.example\n}")); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g.Audience, []string{"https://a.example", "https://b.example"}) {
		t.Errorf("guard audience %v", g.Audience)
	}
	for input, want := range map[string]string{
		"oauth2 {\n access_token_format paseto\n}":                         `access_token_format: want opaque or jwt, got "paseto", at Testfile:2`,
		"oauth2 {\n access_token_format jwt\n access_token_format jwt\n}":  `duplicate subdirective "access_token_format", at Testfile:3`,
		"oauth2 {\n signing_key\n}":                                        "Testfile:2",
		"oauth2 {\n signing_key_rotation 10s\n}":                           "signing_key_rotation: 10s must be at least 1m0s, at Testfile:2",
		"oauth2 {\n client a {\n  resources https://x.example#frag\n }\n}": "must be an absolute URI without a fragment",
		"oauth2 {\n client a {\n  resources /relative\n }\n}":              "must be an absolute URI without a fragment",
	} {
		err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
	}
	if err := new(Guard).UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2_guard {\n audience\n}")); err == nil {
		t.Error("an empty guard audience was accepted")
	}
}

func TestUnmarshalRegistration(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`oauth2 {
		registration {
			initial_access_token {env.OAUTH2_DCR_TOKEN}
			scopes read write
			grant_types authorization_code refresh_token client_credentials
			client_lifetime 720h
			max_clients 500
			rate_limit 3
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Registration{
		InitialAccessToken: "{env.OAUTH2_DCR_TOKEN}",
		Scopes:             []string{"read", "write"},
		GrantTypes:         []string{"authorization_code", "refresh_token", "client_credentials"},
		ClientLifetime:     caddy.Duration(720 * time.Hour),
		MaxClients:         500,
		RateLimit:          3,
	}
	if !reflect.DeepEqual(a.Registration, want) {
		t.Errorf("parsed %+v, want %+v", a.Registration, want)
	}
	if err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2 {\n registration {\n  open\n }\n}")); err != nil {
		t.Errorf("open: %v", err)
	}
	for input, want := range map[string]string{
		"oauth2 {\n registration {\n }\n}":                                         "give exactly one of open and initial_access_token",
		"oauth2 {\n registration {\n  open\n  initial_access_token {env.X}\n }\n}": "give exactly one of open and initial_access_token",
		"oauth2 {\n registration {\n  open\n  open\n }\n}":                         `duplicate subdirective "open" in registration, at Testfile:4`,
		"oauth2 {\n registration {\n  open yes\n }\n}":                             "Testfile:3",
		"oauth2 {\n registration {\n  initial_access_token short\n }\n}":           "initial_access_token must be at least 32 bytes",
		"oauth2 {\n registration {\n  open\n  grant_types implicit\n }\n}":         `registration: unsupported grant type "implicit"`,
		"oauth2 {\n registration {\n  open\n  max_clients 0\n }\n}":                `max_clients: "0" is not a positive whole number`,
		"oauth2 {\n registration {\n  open\n  client_lifetime soon\n }\n}":         `client_lifetime: "soon" is not a duration`,
		"oauth2 {\n registration {\n  open\n  expires 1h\n }\n}":                   `unrecognized subdirective "expires" in registration`,
		"oauth2 {\n registration {\n  open\n }\n registration {\n  open\n }\n}":    `duplicate subdirective "registration"`,
		"oauth2 {\n registration extra {\n  open\n }\n}":                           "Testfile:2",
	} {
		err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
	}
}
