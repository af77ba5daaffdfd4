package oauth2

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalGuardIssuer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  []*ExternalIssuer
		err   string
	}{
		{
			name: "minimal",
			input: `oauth2_guard {
				issuer https://idp.example {
					audience api://a
				}
			}`,
			want: []*ExternalIssuer{{Issuer: "https://idp.example", Audiences: []string{"api://a"}}},
		},
		{
			name: "every option, two issuers",
			input: `oauth2_guard read {
				issuer https://idp.example {
					jwks_uri https://idp.example/jwks
					audience api://a api://b
					leeway 10s
					jwks_min_refresh_interval 1m
					jwks_max_age 2h
					introspection_endpoint https://idp.example/introspect
					introspection_client rs {env.SECRET}
					introspection_cache 30s
					introspection_cache_size 500
					timeout 3s
					tls_trusted_ca_certs /a.pem /b.pem
					tls_insecure_skip_verify
				}
				realm api
				issuer https://other.example {
					audience x
				}
			}`,
			want: []*ExternalIssuer{{
				Issuer: "https://idp.example", JWKSURI: "https://idp.example/jwks", Audiences: []string{"api://a", "api://b"},
				Leeway: caddy.Duration(10 * time.Second), JWKSMinRefreshInterval: caddy.Duration(time.Minute), JWKSMaxAge: caddy.Duration(2 * time.Hour),
				IntrospectionEndpoint: "https://idp.example/introspect", IntrospectionClientID: "rs", IntrospectionClientSecret: "{env.SECRET}",
				IntrospectionCache: caddy.Duration(30 * time.Second), IntrospectionCacheSize: 500,
				Timeout: caddy.Duration(3 * time.Second), TLSTrustedCACerts: []string{"/a.pem", "/b.pem"}, TLSInsecureSkipVerify: true,
			}, {Issuer: "https://other.example", Audiences: []string{"x"}}},
		},
		{name: "no url", input: "oauth2_guard {\n issuer {\n audience a\n }\n}", err: "wrong argument count"},
		{name: "two urls", input: "oauth2_guard {\n issuer a b {\n audience a\n }\n}", err: "wrong argument count"},
		{name: "no audience", input: "oauth2_guard {\n issuer https://i {\n jwks_uri https://i/k\n }\n}", err: "audience is required"},
		{name: "no block", input: "oauth2_guard {\n issuer https://i\n}", err: "audience is required"},
		{name: "unknown", input: "oauth2_guard {\n issuer https://i {\n audience a\n jwks https://x\n }\n}", err: `unrecognized subdirective "jwks"`},
		{name: "duplicate", input: "oauth2_guard {\n issuer https://i {\n audience a\n audience b\n }\n}", err: `duplicate subdirective "audience"`},
		{name: "client with one arg", input: "oauth2_guard {\n issuer https://i {\n audience a\n introspection_client id\n }\n}", err: "wrong argument count"},
		{name: "endpoint without client", input: "oauth2_guard {\n issuer https://i {\n audience a\n introspection_endpoint https://i/in\n }\n}", err: "needs introspection_client"},
		{name: "bad duration", input: "oauth2_guard {\n issuer https://i {\n audience a\n introspection_cache soon\n }\n}", err: "not a duration"},
		{name: "bad size", input: "oauth2_guard {\n issuer https://i {\n audience a\n introspection_cache_size -1\n }\n}", err: "not a positive whole number"},
		{name: "skip verify with arg", input: "oauth2_guard {\n issuer https://i {\n audience a\n tls_insecure_skip_verify yes\n }\n}", err: "wrong argument count"},
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
			if !reflect.DeepEqual(got.Issuers, tc.want) {
				t.Fatalf("got %+v, want %+v", got.Issuers, tc.want)
			}
		})
	}
}
