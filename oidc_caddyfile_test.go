package oauth2

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalOIDC(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`oauth2 {
		oidc {
			claim email  {http.auth.user.email}
			claim name   {http.auth.user.name}
			claim groups {http.auth.user.roles} scope groups
			id_token_lifetime 15m
			subject_type pairwise
			auth_time_placeholder {http.auth.user.auth_time}
		}
		client rp {
			redirect_uri https://rp.example/cb
			scopes openid email
			id_token_signed_response_alg ES256
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(a.OIDC)
	want := `{"claims":[{"name":"email","placeholder":"{http.auth.user.email}"},{"name":"name","placeholder":"{http.auth.user.name}"},` +
		`{"name":"groups","placeholder":"{http.auth.user.roles}","scope":"groups"}],"id_token_lifetime":900000000000,` +
		`"subject_type":"pairwise","auth_time_placeholder":"{http.auth.user.auth_time}"}`
	if string(got) != want {
		t.Errorf("oidc\n got %s\nwant %s", got, want)
	}
	if a.OIDC.IDTokenLifetime != caddy.Duration(15*time.Minute) || a.Clients[0].IDTokenSignedResponseAlg != "ES256" {
		t.Errorf("parsed %+v %+v", a.OIDC, a.Clients[0])
	}

	// A bare oidc turns it on with the defaults.
	var bare App
	if err := bare.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2 {\n oidc\n}")); err != nil || bare.OIDC == nil {
		t.Fatalf("bare oidc: %v %+v", err, bare.OIDC)
	}
	if got, _ := json.Marshal(bare.OIDC); string(got) != "{}" {
		t.Errorf("bare oidc = %s", got)
	}

	for input, want := range map[string]string{
		"oauth2 {\n oidc on\n}":                                                                                   "Testfile:2",
		"oauth2 {\n oidc {\n  claim email\n }\n}":                                                                 "want claim <name> <placeholder> [scope <scope>], got 1 arguments, at Testfile:3",
		"oauth2 {\n oidc {\n  claim email {a} scope\n }\n}":                                                       "want claim <name> <placeholder> [scope <scope>], got 3 arguments",
		"oauth2 {\n oidc {\n  claim email {a} scop x\n }\n}":                                                      "want claim <name> <placeholder> [scope <scope>], got 4 arguments",
		"oauth2 {\n oidc {\n  claim email {a}\n  claim email {b}\n }\n}":                                          `claim "email" is given twice, at Testfile:4`,
		"oauth2 {\n oidc {\n  subject_type secret\n }\n}":                                                         `subject_type: want public or pairwise, got "secret"`,
		"oauth2 {\n oidc {\n  id_token_lifetime 10ms\n }\n}":                                                      "Testfile:3",
		"oauth2 {\n oidc {\n  id_token_lifetime 1h\n  id_token_lifetime 2h\n }\n}":                                `duplicate subdirective "id_token_lifetime" in oidc`,
		"oauth2 {\n oidc {\n  auth_time_placeholder\n }\n}":                                                       "Testfile:3",
		"oauth2 {\n oidc {\n  frobnicate\n }\n}":                                                                  `unrecognized subdirective "frobnicate" in oidc`,
		"oauth2 {\n oidc\n oidc\n}":                                                                               `duplicate subdirective "oidc"`,
		"oauth2 {\n client a {\n  redirect_uri https://a.example/cb\n  id_token_signed_response_alg HS256\n }\n}": "id_token_signed_response_alg",
	} {
		err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
	}
}
