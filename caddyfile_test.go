package oauth2

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalApp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  *App
		err   string
	}{
		{
			name:  "empty",
			input: `oauth2`,
			want:  &App{},
		},
		{
			name: "everything",
			input: `oauth2 {
				issuer https://auth.example.com
				token_secret {env.SECRET}
				purge_every 30s
				purge_batch 500
				authorization_code_lifetime 5m
				access_token_lifetime 1h
				refresh_token_lifetime 12h
				require_pkce
				store_timeout 1500ms
				validation_cache 5s
				revocation_feed 250ms
				max_body_size 1024
				client svc {
					secret_hash ` + secretHash + `
					redirect_uri https://a.example/cb https://b.example/cb
					grant_types client_credentials
					scopes read write
					introspect
				}
				client app {
					redirect_uri http://127.0.0.1/cb
					skip_consent
				}
			}`,
			want: &App{
				Issuer:                    "https://auth.example.com",
				TokenSecret:               "{env.SECRET}",
				PurgeEvery:                caddy.Duration(30 * time.Second),
				PurgeBatch:                500,
				AuthorizationCodeLifetime: caddy.Duration(5 * time.Minute),
				AccessTokenLifetime:       caddy.Duration(time.Hour),
				RefreshTokenLifetime:      caddy.Duration(12 * time.Hour),
				RequirePKCE:               true,
				StoreTimeout:              caddy.Duration(1500 * time.Millisecond),
				ValidationCache:           caddy.Duration(5 * time.Second),
				RevocationFeedInterval:    caddy.Duration(250 * time.Millisecond),
				MaxBodySize:               1024,
				Clients: []*Client{
					{ID: "svc", SecretHash: secretHash, RedirectURIs: []string{"https://a.example/cb", "https://b.example/cb"},
						GrantTypes: []string{"client_credentials"}, Scopes: []string{"read", "write"}, Introspect: true},
					{ID: "app", RedirectURIs: []string{"http://127.0.0.1/cb"}, SkipConsent: true},
				},
			},
		},
		{name: "argument on the option", input: `oauth2 x`, err: "wrong argument count"},
		{name: "revocation feed off", input: "oauth2 {\n revocation_feed off\n}", want: &App{RevocationFeedOff: true}},
		{name: "bad revocation feed", input: "oauth2 {\n revocation_feed never\n}", err: "want a positive interval or off"},
		{name: "unknown subdirective", input: "oauth2 {\n bogus 1\n}", err: `unrecognized subdirective "bogus"`},
		{name: "duplicate subdirective", input: "oauth2 {\n purge_every 1s\n purge_every 2s\n}", err: `duplicate subdirective "purge_every"`},
		{name: "bad duration", input: "oauth2 {\n purge_every soon\n}", err: `purge_every: "soon" is not a duration such as 30s, 10m or 12h, at Testfile:2`},
		{name: "zero duration", input: "oauth2 {\n access_token_lifetime 0s\n}", err: "access_token_lifetime: 0s must be at least 1s, at Testfile:2"},
		{name: "zero purge interval", input: "oauth2 {\n purge_every 0s\n}", err: "purge_every: 0s must be positive, at Testfile:2"},
		{name: "short literal secret", input: "oauth2 {\n token_secret tooshort\n}", err: "token_secret must be at least 32 bytes, got 8; use a placeholder"},
		{name: "bad issuer", input: "oauth2 {\n issuer https://a.example/?x=1\n}", err: "Testfile:2"},
		{name: "unknown grant type", input: "oauth2 {\n client a {\n  redirect_uri https://a.example/cb\n  grant_types authorization_code password\n }\n}", err: `client "a": unsupported grant type "password": want authorization_code, refresh_token, client_credentials, at Testfile:4`},
		{name: "bad redirect uri", input: "oauth2 {\n client a {\n  redirect_uri /relative\n }\n}", err: `client "a": redirect URI "/relative": must be absolute, at Testfile:2`},
		{name: "http redirect uri on localhost", input: "oauth2 {\n client a {\n  redirect_uri http://localhost:8080/cb\n }\n}", err: `client "a": redirect URI "http://localhost:8080/cb": http is allowed only on the loopback IPs`},
		{name: "public client_credentials", input: "oauth2 {\n client a {\n  redirect_uri https://a.example/cb\n  grant_types client_credentials\n }\n}", err: `client "a": a public client cannot use client_credentials, at Testfile:2`},
		{name: "bad secret hash", input: "oauth2 {\n client a {\n  secret_hash plain\n }\n}", err: `client "a": secret hash is not a bcrypt hash`},
		{name: "missing duration", input: "oauth2 {\n purge_every\n}", err: "wrong argument count"},
		{name: "two durations", input: "oauth2 {\n purge_every 1s 2s\n}", err: "wrong argument count"},
		{name: "bad batch", input: "oauth2 {\n purge_batch -5\n}", err: "not a positive whole number"},
		{name: "require_pkce with argument", input: "oauth2 {\n require_pkce yes\n}", err: "wrong argument count"},
		{name: "client without id", input: "oauth2 {\n client {\n }\n}", err: "wrong argument count"},
		{name: "duplicate client", input: "oauth2 {\n client a {\n  redirect_uri https://a.example/cb\n }\n client a {\n  redirect_uri https://a.example/cb\n }\n}", err: `client "a" is defined twice`},
		{name: "unknown client subdirective", input: "oauth2 {\n client a {\n secret x\n }\n}", err: `unrecognized subdirective "secret" in client "a"`},
		{name: "duplicate client subdirective", input: "oauth2 {\n client a {\n scopes a\n scopes b\n }\n}", err: `duplicate subdirective "scopes"`},
		{name: "empty scopes", input: "oauth2 {\n client a {\n scopes\n }\n}", err: "wrong argument count"},
		{name: "introspect with argument", input: "oauth2 {\n client a {\n introspect yes\n }\n}", err: "wrong argument count"},
		{name: "unknown store driver", input: "oauth2 {\n access_token_store nosuch\n}", err: "oauth2.stores.nosuch"},
		{name: "store without driver", input: "oauth2 {\n access_token_store\n}", err: "wrong argument count"},
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

func TestUnmarshalStoreOption(t *testing.T) {
	a := new(App)
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2 {\n access_token_store cache\n authorization_code_store cache\n}"))
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []json.RawMessage{a.AccessTokenStoreRaw, a.AuthorizationCodeStoreRaw} {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil || m["driver"] != "cache" {
			t.Fatalf("store JSON %s: %v", raw, err)
		}
	}
}

func TestUnmarshalGuard(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  *Guard
		err   string
	}{
		{name: "bare", input: `oauth2_guard`, want: &Guard{}},
		{name: "inline scopes", input: `oauth2_guard read write`, want: &Guard{Scopes: []string{"read", "write"}}},
		{
			name:  "block",
			input: "oauth2_guard {\n scopes read\n realm my-api\n keep_authorization\n}",
			want:  &Guard{Scopes: []string{"read"}, Realm: "my-api", KeepAuthorization: true},
		},
		{name: "unknown", input: "oauth2_guard {\n scope read\n}", err: `unrecognized subdirective "scope"`},
		{name: "empty scopes", input: "oauth2_guard {\n scopes\n}", err: "wrong argument count"},
		{name: "two realms", input: "oauth2_guard {\n realm a b\n}", err: "wrong argument count"},
		{name: "duplicate", input: "oauth2_guard {\n realm a\n realm b\n}", err: `duplicate subdirective "realm"`},
		{name: "keep with arg", input: "oauth2_guard {\n keep_authorization yes\n}", err: "wrong argument count"},
		{name: "dpop required", input: "oauth2_guard {\n dpop required\n}", want: &Guard{RequireDPoP: true}},
		{name: "dpop other", input: "oauth2_guard {\n dpop optional\n}", err: `dpop: want required, got "optional"`},
		{name: "dpop bare", input: "oauth2_guard {\n dpop\n}", err: "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := new(Guard)
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
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestUnmarshalServer(t *testing.T) {
	if err := new(Server).UnmarshalCaddyfile(caddyfile.NewTestDispenser(`oauth2_server`)); err != nil {
		t.Fatal(err)
	}
	for _, input := range []string{"oauth2_server x", "oauth2_server {\n issuer x\n}"} {
		if err := new(Server).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil {
			t.Errorf("%q: no error", input)
		}
	}
}

func TestUnmarshalDPoP(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        *DPoP
		client      bool
		err         string
	}{
		{name: "empty block", input: "dpop {\n}", want: &DPoP{}},
		{name: "all", input: "dpop {\n nonce\n required\n proof_lifetime 30s\n algs ES256 EdDSA\n replay_cache_size 1000\n}",
			want: &DPoP{Nonce: true, Required: true, ProofLifetime: caddy.Duration(30 * time.Second), Algs: []string{"ES256", "EdDSA"}, ReplayCacheSize: 1000}},
		{name: "nonce with arg", input: "dpop {\n nonce yes\n}", err: "wrong argument count"},
		{name: "short lifetime", input: "dpop {\n proof_lifetime 10ms\n}", err: "must be at least 1s"},
		{name: "symmetric alg", input: "dpop {\n algs HS256\n}", err: `algorithm "HS256" is not an asymmetric`},
		{name: "alg none", input: "dpop {\n algs none\n}", err: `algorithm "none"`},
		{name: "zero cache", input: "dpop {\n replay_cache_size 0\n}", err: "not a positive whole number"},
		{name: "duplicate", input: "dpop {\n nonce\n nonce\n}", err: `duplicate subdirective "nonce"`},
		{name: "unknown", input: "dpop {\n nonces\n}", err: `unrecognized subdirective "nonces"`},
		{name: "argument", input: "dpop on", err: "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := new(App)
			err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2 {\n" + tc.input + "\n}"))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a.DPoP, tc.want) {
				t.Fatalf("got %+v, want %+v", a.DPoP, tc.want)
			}
		})
	}
	a := new(App)
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2 {\n client c {\n redirect_uri https://c.example/cb\n dpop_bound_access_tokens\n }\n}"))
	if err != nil || len(a.Clients) != 1 || !a.Clients[0].DPoPBoundAccessTokens {
		t.Fatalf("dpop_bound_access_tokens: %v %+v", err, a.Clients)
	}
	if err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2 {\n client c {\n redirect_uri https://c.example/cb\n dpop_bound_access_tokens yes\n }\n}")); err == nil {
		t.Fatal("dpop_bound_access_tokens with an argument accepted")
	}
}
