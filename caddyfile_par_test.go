package oauth2

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalPARAndPrivateKeyJWT(t *testing.T) {
	for _, tc := range []struct {
		name, input, err string
		want             *App
	}{
		{
			name: "options",
			input: `oauth2 {
				profile fapi2
				require_pushed_authorization_requests
				client bank {
					token_endpoint_auth_method private_key_jwt
					jwks_uri https://bank.example/jwks.json
					redirect_uri https://bank.example/cb
					require_pushed_authorization_requests
				}
				client app {
					jwks /etc/caddy/app.jwks.json
					redirect_uri https://app.example/cb
				}
			}`,
			want: &App{Profile: "fapi2", RequirePushedAuthorizationRequests: true, Clients: []*Client{
				{ID: "bank", TokenEndpointAuthMethod: "private_key_jwt", JWKSURI: "https://bank.example/jwks.json",
					RedirectURIs: []string{"https://bank.example/cb"}, RequirePushedAuthorizationRequests: true},
				{ID: "app", JWKS: "/etc/caddy/app.jwks.json", RedirectURIs: []string{"https://app.example/cb"}},
			}},
		},
		{name: "unknown profile", input: "oauth2 {\n profile fapi1\n}", err: `profile: want fapi2, got "fapi1"`},
		{name: "profile without argument", input: "oauth2 {\n profile\n}", err: "wrong argument count"},
		{name: "require_pushed_authorization_requests with argument", input: "oauth2 {\n require_pushed_authorization_requests yes\n}", err: "wrong argument count"},
		{name: "http jwks_uri", input: "oauth2 {\n client a {\n  jwks_uri http://a.example/jwks\n  redirect_uri https://a.example/cb\n }\n}", err: `client "a": jwks_uri "http://a.example/jwks" must be https, at Testfile:2`},
		{name: "jwks and jwks_uri", input: "oauth2 {\n client a {\n  jwks_uri https://a.example/jwks\n  jwks /x.json\n  redirect_uri https://a.example/cb\n }\n}", err: "exclusive"},
		{name: "secret and keys", input: "oauth2 {\n client a {\n  secret_hash " + secretHash + "\n  jwks_uri https://a.example/jwks\n  redirect_uri https://a.example/cb\n }\n}", err: "no secret"},
		{name: "private_key_jwt without keys", input: "oauth2 {\n client a {\n  token_endpoint_auth_method private_key_jwt\n  redirect_uri https://a.example/cb\n }\n}", err: "needs jwks_uri or jwks"},
		{name: "unknown auth method", input: "oauth2 {\n client a {\n  token_endpoint_auth_method tls_client_auth\n  redirect_uri https://a.example/cb\n }\n}", err: `"tls_client_auth" is not supported`},
		{name: "secret method without secret", input: "oauth2 {\n client a {\n  token_endpoint_auth_method client_secret_post\n  redirect_uri https://a.example/cb\n }\n}", err: "needs a secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := new(App)
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(tc.want)
				t.Fatalf("got  %s\nwant %s", gj, wj)
			}
		})
	}
}
