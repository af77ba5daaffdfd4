package oauth2

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// oidcProviderEnv names the URL of panva's oidc-provider as
// scripts/oidc-provider.sh runs it (scripts/oidc-provider/server.mjs).
const oidcProviderEnv = "OAUTH2_TEST_OIDC_PROVIDER"

// Ports of the external-issuer tests.
const (
	externalPort      = 20580
	externalHTTPSPort = 20581
	externalAdminPort = 20582
)

// idpToken asks the provider at base for a client_credentials token of
// client (secret app-secret); resource "" gets an opaque token, a resource
// a JWT for it.
func idpToken(t *testing.T, base, client, resource, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	if resource != "" {
		form.Set("resource", resource)
	}
	req, _ := http.NewRequest("POST", base+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, "app-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("token from %s: %s %v %s", base, resp.Status, err, body.Error)
	}
	return body.AccessToken
}

// idpControl posts to one of the provider's test controls.
func idpControl(t *testing.T, base, what string) {
	t.Helper()
	resp, err := http.Post(base+"/test/"+what, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("/test/%s: %s", what, resp.Status)
	}
}

// TestExternalIssuerOIDCProvider runs the guard, in a real Caddy, against a
// real third-party authorization server: panva's oidc-provider.
func TestExternalIssuerOIDCProvider(t *testing.T) {
	idp := os.Getenv(oidcProviderEnv)
	if idp == "" {
		t.Skipf("set %s to the URL of scripts/oidc-provider.sh (scripts/test.sh does)", oidcProviderEnv)
	}
	u, err := url.Parse(idp)
	if err != nil {
		t.Fatal(err)
	}
	var port int
	fmt.Sscanf(u.Port(), "%d", &port)
	otherIdP := fmt.Sprintf("http://%s:%d", u.Hostname(), port+1) // another issuer, keys of its own
	t.Cleanup(func() { idpControl(t, idp, "up") })

	up := newUpstream(t)
	config := func(realm string) string {
		return fmt.Sprintf(`{
	admin 127.0.0.1:%[5]d
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
		realm %[6]s
		issuer %[3]s {
			audience api://orders
			leeway 1s
			jwks_min_refresh_interval 1s
			introspection_endpoint %[3]s/token/introspection
			introspection_client guard {env.OAUTH2_TEST_IDP_SECRET}
			introspection_cache 3s
			timeout 2s
		}
	}
	reverse_proxy %[4]s {
		header_up X-User {http.auth.user.id}
		header_up X-Client {oauth2.client_id}
		header_up X-Aud {oauth2.claims.aud}
		header_up X-Iss {oauth2.claims.iss}
	}
}
`, externalPort, externalHTTPSPort, idp, up.Listener.Addr().String(), externalAdminPort, realm)
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(config("api")), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OAUTH2_TEST_IDP_SECRET", "guard-secret")
	caddy := startCaddyProcess(t, path, externalPort)
	api := fmt.Sprintf("http://127.0.0.1:%d/orders", externalPort)

	call := func(t *testing.T, bearer string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", api, nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	want := func(t *testing.T, bearer string, status int, errCode string) {
		t.Helper()
		got, challenge := call(t, bearer)
		if got != status {
			t.Fatalf("status %d, want %d (challenge %q)\ncaddy log:\n%s", got, status, challenge, caddy.log)
		}
		if errCode != "" && !strings.Contains(challenge, `error="`+errCode+`"`) {
			t.Fatalf("challenge %q, want error %s", challenge, errCode)
		}
		if status == http.StatusOK {
			if h := up.last(t); h.Get("Authorization") != "" {
				t.Fatal("the token went upstream")
			}
		}
	}

	// Issued now, expired by the end (2 s life, 1 s leeway).
	short := idpToken(t, idp, "app-short", "api://orders", "read")
	shortIssued := time.Now()
	want(t, short, http.StatusOK, "")

	jwt := idpToken(t, idp, "app", "api://orders", "read")
	t.Run("its JWT passes, claims go upstream", func(t *testing.T) {
		want(t, jwt, http.StatusOK, "")
		want(t, jwt, http.StatusOK, "")
		_, _ = call(t, jwt)
		h := up.last(t)
		if h.Get("X-User") != "app" || h.Get("X-Client") != "app" || h.Get("X-Aud") != "api://orders" || h.Get("X-Iss") != idp {
			t.Fatalf("upstream saw %v", h)
		}
	})
	t.Run("a JWT without the scope is 403", func(t *testing.T) {
		want(t, idpToken(t, idp, "app", "api://orders", "write"), http.StatusForbidden, "insufficient_scope")
	})
	t.Run("tampered JWT is 401", func(t *testing.T) {
		parts := strings.Split(jwt, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		forged := strings.Replace(string(payload), `"scope":"read"`, `"scope":"read admin"`, 1)
		if forged == string(payload) {
			t.Fatalf("no scope claim in %s", payload)
		}
		want(t, parts[0]+"."+base64.RawURLEncoding.EncodeToString([]byte(forged))+"."+parts[2], http.StatusUnauthorized, "invalid_token")
		want(t, parts[0]+"."+parts[1]+"."+parts[2][:len(parts[2])-4]+"AAAA", http.StatusUnauthorized, "invalid_token")
	})
	t.Run("wrong audience is 401", func(t *testing.T) {
		want(t, idpToken(t, idp, "app", "api://billing", "read"), http.StatusUnauthorized, "invalid_token")
	})
	t.Run("wrong issuer is 401", func(t *testing.T) {
		other := idpToken(t, otherIdP, "app", "api://orders", "read")
		want(t, other, http.StatusUnauthorized, "invalid_token")
		// The other issuer's token passed off as this issuer's: its
		// signature is by keys this issuer never published.
		parts := strings.Split(other, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		passedOff := strings.Replace(string(payload), otherIdP, idp, 1)
		want(t, parts[0]+"."+base64.RawURLEncoding.EncodeToString([]byte(passedOff))+"."+parts[2], http.StatusUnauthorized, "invalid_token")
	})

	opaque := idpToken(t, idp, "app", "", "read")
	t.Run("its opaque token passes through introspection", func(t *testing.T) {
		want(t, opaque, http.StatusOK, "")
		_, _ = call(t, opaque)
		if h := up.last(t); h.Get("X-Client") != "app" || h.Get("X-Iss") != idp {
			t.Fatalf("upstream saw %v", h)
		}
		want(t, "made-up-opaque-token", http.StatusUnauthorized, "invalid_token")
	})
	t.Run("an opaque token revoked at the IdP is refused once the cache expires", func(t *testing.T) {
		revoked := idpToken(t, idp, "app", "", "read")
		want(t, revoked, http.StatusOK, "")
		cachedAt := time.Now()
		form := url.Values{"token": {revoked}}
		req, _ := http.NewRequest("POST", idp+"/token/revocation", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app", "app-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("revocation: %v %v", resp, err)
		}
		resp.Body.Close()
		// Within introspection_cache the cached answer still holds
		// (documented); after it the IdP's word counts.
		if time.Since(cachedAt) < 2*time.Second {
			want(t, revoked, http.StatusOK, "")
		}
		time.Sleep(time.Until(cachedAt.Add(3*time.Second + 100*time.Millisecond)))
		want(t, revoked, http.StatusUnauthorized, "invalid_token")
	})
	t.Run("key rotation at the IdP is picked up without a restart", func(t *testing.T) {
		idpControl(t, idp, "rotate")
		rotated := idpToken(t, idp, "app", "api://orders", "read")
		if kid(t, rotated) == kid(t, jwt) {
			t.Fatal("the IdP did not rotate its key")
		}
		time.Sleep(1100 * time.Millisecond) // jwks_min_refresh_interval
		want(t, rotated, http.StatusOK, "")
		want(t, jwt, http.StatusOK, "") // the old key is still published
	})
	t.Run("IdP down: opaque tokens 503, JWTs keep validating", func(t *testing.T) {
		fresh := idpToken(t, idp, "app", "", "read")
		cached := idpToken(t, idp, "app", "", "read")
		want(t, cached, http.StatusOK, "")
		idpControl(t, idp, "down")
		defer idpControl(t, idp, "up")
		want(t, fresh, http.StatusServiceUnavailable, "")
		want(t, cached, http.StatusOK, "") // within introspection_cache
		want(t, jwt, http.StatusOK, "")
		// An unknown key id makes the guard refetch the keys, which fails:
		// the last good set is kept.
		time.Sleep(1100 * time.Millisecond) // jwks_min_refresh_interval
		parts := strings.Split(jwt, ".")
		header, _ := base64.RawURLEncoding.DecodeString(parts[0])
		unknownKid := strings.Replace(string(header), kid(t, jwt), "unknown", 1)
		want(t, base64.RawURLEncoding.EncodeToString([]byte(unknownKid))+"."+parts[1]+"."+parts[2], http.StatusUnauthorized, "invalid_token")
		want(t, jwt, http.StatusOK, "")
		if !strings.Contains(caddy.log.String(), "fetching signing keys failed") {
			t.Errorf("no refetch attempt logged:\n%s", caddy.log)
		}
		// A reload while the IdP is down keeps the keys: the new
		// configuration's guard verifies JWTs it never saw.
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/load", externalAdminPort), "text/caddyfile", strings.NewReader(config("reloaded")))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("reload: %s\n%s", resp.Status, caddy.log)
		}
		// A JWT of no configured issuer: 401 with the challenge, no IdP asked.
		noIssuer := "eyJhbGciOiJFUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"x"}`)) + ".c2ln"
		if _, challenge := call(t, noIssuer); !strings.Contains(challenge, `realm="reloaded"`) {
			t.Fatalf("not reloaded: %q", challenge)
		}
		want(t, jwt, http.StatusOK, "")
		want(t, idpToken(t, otherIdP, "app", "api://orders", "read"), http.StatusUnauthorized, "invalid_token")
		idpControl(t, idp, "up")
		want(t, fresh, http.StatusOK, "")
	})
	t.Run("expired JWT is 401", func(t *testing.T) {
		time.Sleep(time.Until(shortIssued.Add(3*time.Second + 200*time.Millisecond)))
		want(t, short, http.StatusUnauthorized, "invalid_token")
	})
	log := caddy.log.String()
	if !strings.Contains(log, "introspection failed") {
		t.Error("the introspection outage was not logged")
	}
	for what, secret := range map[string]string{"introspection secret": "guard-secret", "JWT": jwt, "opaque token": opaque} {
		if strings.Contains(log, secret) {
			t.Errorf("the %s is in the log", what)
		}
	}
}

// kid returns a JWT's key id.
func kid(t *testing.T, raw string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}
