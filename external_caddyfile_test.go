package oauth2

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/external"
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
					introspection_negative_cache 5s
					introspection_max_concurrent 4
					token_prefix idp_ idq_
					require_typ
					subject_prefix idp:
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
				IntrospectionNegativeCache: caddy.Duration(5 * time.Second), IntrospectionMaxConcurrent: 4,
				TokenPrefixes: []string{"idp_", "idq_"}, RequireTyp: true, SubjectPrefix: "idp:",
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
		{name: "require_typ with arg", input: "oauth2_guard {\n issuer https://i {\n audience a\n require_typ yes\n }\n}", err: "wrong argument count"},
		{name: "max concurrent zero", input: "oauth2_guard {\n issuer https://i {\n audience a\n introspection_max_concurrent 0\n }\n}", err: "not a positive whole number"},
		{name: "token_prefix without endpoint", input: "oauth2_guard {\n issuer https://i {\n audience a\n token_prefix x_\n }\n}", err: "token_prefix needs introspection_endpoint"},
		{name: "token_prefix without value", input: "oauth2_guard {\n issuer https://i {\n audience a\n token_prefix\n }\n}", err: "wrong argument count"},
		{name: "subject_prefix twice", input: "oauth2_guard {\n issuer https://i {\n audience a\n subject_prefix a b\n }\n}", err: "wrong argument count"},
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

func TestExternalIssuerProvision(t *testing.T) {
	g := &Guard{logger: zap.NewNop(), Issuers: []*ExternalIssuer{
		{Issuer: "https://a.example", Audiences: []string{"x"}, IntrospectionEndpoint: "https://a.example/i", IntrospectionClientID: "rs", IntrospectionClientSecret: "s"},
		{Issuer: "https://b.example", Audiences: []string{"x"}},
	}}
	sources, err := g.externalSources()
	if err != nil {
		t.Fatal(err)
	}
	// One JWT source per issuer, then the introspection source last.
	if len(sources) != 3 {
		t.Fatalf("%d sources, want 3", len(sources))
	}
	if _, ok := sources[2].(external.Introspection); !ok {
		t.Fatalf("last source is %T, want the introspection source", sources[2])
	}
	// A reload: the next configuration shares the keys until the first is
	// cleaned up, and nothing stays pooled after both are.
	next := &Guard{logger: zap.NewNop(), Issuers: g.Issuers}
	if _, err := next.externalSources(); err != nil {
		t.Fatal(err)
	}
	refs := append([]string(nil), g.keyRefs...)
	if len(refs) != 2 {
		t.Fatalf("%d pooled keys, want 2", len(refs))
	}
	for _, ref := range refs {
		if n, ok := issuerKeys.References(ref); !ok || n != 2 {
			t.Fatalf("%s: %d references, want 2", ref, n)
		}
	}
	g.Cleanup()
	next.Cleanup()
	for _, ref := range refs {
		if _, ok := issuerKeys.References(ref); ok {
			t.Fatalf("%s still pooled", ref)
		}
	}
	for name, iss := range map[string]*ExternalIssuer{
		"no audience":         {Issuer: "https://a.example"},
		"not a URL":           {Issuer: "idp", Audiences: []string{"x"}},
		"query":               {Issuer: "https://a.example/?x=1", Audiences: []string{"x"}},
		"negative":            {Issuer: "https://a.example", Audiences: []string{"x"}, Timeout: -1},
		"missing CA file":     {Issuer: "https://a.example", Audiences: []string{"x"}, TLSTrustedCACerts: []string{"/nonexistent.pem"}},
		"bad endpoint":        {Issuer: "https://a.example", Audiences: []string{"x"}, IntrospectionEndpoint: "a.example/i", IntrospectionClientID: "rs"},
		"http endpoint":       {Issuer: "https://a.example", Audiences: []string{"x"}, IntrospectionEndpoint: "http://a.example/i", IntrospectionClientID: "rs"},
		"http jwks_uri":       {Issuer: "https://a.example", Audiences: []string{"x"}, JWKSURI: "http://a.example/jwks"},
		"http issuer":         {Issuer: "http://a.example", Audiences: []string{"x"}},
		"our prefix":          {Issuer: "https://a.example", Audiences: []string{"x"}, IntrospectionEndpoint: "https://a.example/i", IntrospectionClientID: "rs", TokenPrefixes: []string{"crt_"}},
		"prefix of ours":      {Issuer: "https://a.example", Audiences: []string{"x"}, IntrospectionEndpoint: "https://a.example/i", IntrospectionClientID: "rs", TokenPrefixes: []string{"c"}},
		"prefix, no endpoint": {Issuer: "https://a.example", Audiences: []string{"x"}, TokenPrefixes: []string{"a_"}},
	} {
		g := &Guard{logger: zap.NewNop(), Issuers: []*ExternalIssuer{iss}}
		if _, err := g.externalSources(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	g = &Guard{logger: zap.NewNop(), Issuers: []*ExternalIssuer{
		{Issuer: "https://a.example", Audiences: []string{"x"}}, {Issuer: "https://a.example", Audiences: []string{"y"}},
	}}
	if _, err := g.externalSources(); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate issuer: %v", err)
	}
	g = &Guard{logger: zap.NewNop(), Issuers: []*ExternalIssuer{
		{Issuer: "https://a.example", Audiences: []string{"x"}, IntrospectionEndpoint: "https://a.example/i", IntrospectionClientID: "rs", TokenPrefixes: []string{"ab_"}},
		{Issuer: "https://b.example", Audiences: []string{"x"}, IntrospectionEndpoint: "https://b.example/i", IntrospectionClientID: "rs", TokenPrefixes: []string{"ab"}},
	}}
	if _, err := g.externalSources(); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("overlapping token prefixes: %v", err)
	}
}

// TestExternalIssuerTLS checks the client the guard talks to an issuer with:
// the system roots by default, tls_trusted_ca_certs instead, or no check.
func TestExternalIssuerTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OAUTH2_TEST_CA_FILE", caFile)
	for name, tc := range map[string]struct {
		iss ExternalIssuer
		ok  bool
	}{
		"system roots":             {ExternalIssuer{}, false},
		"trusted CA (placeholder)": {ExternalIssuer{TLSTrustedCACerts: []string{"{env.OAUTH2_TEST_CA_FILE}"}}, true},
		"insecure skip verify":     {ExternalIssuer{TLSInsecureSkipVerify: true}, true},
	} {
		tc.iss.Issuer, tc.iss.Audiences = srv.URL, []string{"x"}
		cfg, err := tc.iss.config(caddy.NewReplacer(), zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Client.Timeout() != 5*time.Second {
			t.Errorf("%s: timeout %v, want the 5s default", name, cfg.Client.Timeout())
		}
		_, _, err = cfg.Client.Get(context.Background(), srv.URL, "*/*")
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", name, err)
		}
	}
}
