package oauth2

// The guard checks the DPoP proofs of another authorization server's bound
// tokens: panva's oidc-provider (scripts/oidc-provider.sh) binds a
// client_credentials token to the key of the request's proof, as a JWT
// with cnf.jkt or as an opaque token whose introspection says cnf.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/go-jose/go-jose/v4"
)

const (
	dpopExternalPort      = 20750
	dpopExternalHTTPSPort = 20751
	dpopExternalAdminPort = 20752
)

// idpDPoPToken asks the provider for a client_credentials token with a DPoP
// proof of key; resource "" gets an opaque token, a resource a JWT.
func idpDPoPToken(t *testing.T, base string, key *dpopKey, resource string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}
	if resource != "" {
		form.Set("resource", resource)
	}
	req, _ := http.NewRequest("POST", base+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("app", "app-secret")
	req.Header.Set("DPoP", key.proof(t, "POST", base+"/token", "", proofOpts{}))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("DPoP token from %s: %s %v", base, resp.Status, body)
	}
	return body["access_token"].(string)
}

func TestDPoPExternalIssuerOIDCProvider(t *testing.T) {
	idp := os.Getenv(oidcProviderEnv)
	if idp == "" {
		t.Skipf("set %s to the URL of scripts/oidc-provider.sh (scripts/test.sh does)", oidcProviderEnv)
	}
	up := newUpstream(t)
	t.Setenv("OAUTH2_TEST_IDP_SECRET", "guard-secret")
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: dpopExternalAdminPort})
	tester.InitServer(fmt.Sprintf(`{
	admin localhost:%[4]d
	default_bind 127.0.0.1
	http_port %[1]d
	https_port %[2]d
	grace_period 1ns
	skip_install_trust
	oauth2 {
		token_secret 0123456789abcdef0123456789abcdef
	}
}
http://127.0.0.1:%[1]d {
	oauth2_guard read {
		issuer %[3]s {
			audience api://orders
			introspection_endpoint %[3]s/token/introspection
			introspection_client guard {env.OAUTH2_TEST_IDP_SECRET}
		}
	}
	reverse_proxy %[5]s
}
`, dpopExternalPort, dpopExternalHTTPSPort, idp, dpopExternalAdminPort, up.Listener.Addr().String()), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	api := fmt.Sprintf("http://127.0.0.1:%d/orders", dpopExternalPort)
	for _, c := range []struct{ name, resource string }{
		{"JWT with cnf.jkt", "api://orders"},
		{"opaque, cnf by introspection", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
				key := newDPoPKey(t, alg)
				at := idpDPoPToken(t, idp, key, c.resource)
				if resp := dpopCall(t, "GET", api, "DPoP", at, key.proof(t, "GET", api, at, proofOpts{})); resp.StatusCode != 200 {
					t.Fatalf("%s: the provider's bound token with its proof: %d %v", alg, resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
				}
				wantDenied(t, "as Bearer", dpopCall(t, "GET", api, "Bearer", at, ""), 401, "invalid_token")
				other := newDPoPKey(t, jose.ES256)
				wantDenied(t, "proof of another key", dpopCall(t, "GET", api, "DPoP", at, other.proof(t, "GET", api, at, proofOpts{})), 401, "invalid_dpop_proof")
				wantDenied(t, "proof for another URL", dpopCall(t, "GET", api, "DPoP", at, key.proof(t, "GET", api+"/x", at, proofOpts{})), 401, "invalid_dpop_proof")
				p := key.proof(t, "GET", api, at, proofOpts{})
				if resp := dpopCall(t, "GET", api, "DPoP", at, p); resp.StatusCode != 200 {
					t.Fatalf("second proof: %d", resp.StatusCode)
				}
				wantDenied(t, "replayed proof", dpopCall(t, "GET", api, "DPoP", at, p), 401, "invalid_dpop_proof")
			}
		})
	}
}
