package oauth2

// End-to-end tests of DPoP (RFC 9449) through a real Caddy: tokens bound at
// the token endpoint, proofs checked by oauth2_guard, every refusal a
// client would meet. The client side (proofs signed with go-jose) is
// written here, independently of the dpop package.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

const (
	dpopAuthBase  = "http://localhost:20740"
	dpopAPIBase   = "http://localhost:20741"
	dpopAdminPort = 20749
)

// dpopKey is a client's DPoP key.
type dpopKey struct {
	priv crypto.Signer
	alg  jose.SignatureAlgorithm
}

func newDPoPKey(t *testing.T, alg jose.SignatureAlgorithm) *dpopKey {
	t.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case jose.EdDSA:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{priv: k, alg: alg}
}

// jkt is the key's RFC 7638 thumbprint, as go-jose computes it.
func (k *dpopKey) jkt(t *testing.T) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: k.priv.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// proofOpts change a proof away from the valid one.
type proofOpts struct {
	iat   time.Time
	ath   string // "" with token set: computed
	nonce string
}

// proof signs a DPoP proof for method and u; accessToken sets ath.
func (k *dpopKey) proof(t *testing.T, method, u, accessToken string, o proofOpts) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	iat := o.iat
	if iat.IsZero() {
		iat = time.Now()
	}
	claims := map[string]any{"jti": rand.Text(), "htm": method, "htu": u, "iat": iat.Unix()}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if o.ath != "" {
		claims["ath"] = o.ath
	}
	if o.nonce != "" {
		claims["nonce"] = o.nonce
	}
	raw, err := josejwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// unsignedProof is a proof with alg none, or signed with HMAC under a
// symmetric jwk: both must be refused.
func unsignedProof(t *testing.T, k *dpopKey, alg, method, u string) string {
	b64 := base64.RawURLEncoding
	pub, _ := json.Marshal(jose.JSONWebKey{Key: k.priv.Public()})
	secret := []byte("0123456789abcdef0123456789abcdef")
	jwk := json.RawMessage(pub)
	if alg == "HS256" {
		jwk, _ = json.Marshal(map[string]string{"kty": "oct", "k": b64.EncodeToString(secret)})
	}
	h, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": jwk})
	c, _ := json.Marshal(map[string]any{"jti": rand.Text(), "htm": method, "htu": u, "iat": time.Now().Unix()})
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	if alg == "none" {
		return input + "."
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + b64.EncodeToString(m.Sum(nil))
}

// dpopConfig configures issuer and API; extra goes into the oauth2 block.
func dpopConfig(upstreamAddr, format, extra string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	default_bind 127.0.0.1
	http_port 20740
	https_port 20742
	grace_period 1ns
	skip_install_trust
	oauth2 {
		issuer %s
		access_token_format %s
		%s
		client svc {
			secret_hash %s
			grant_types client_credentials
			scopes read
			introspect
		}
		client bound {
			secret_hash %s
			grant_types client_credentials
			scopes read
			dpop_bound_access_tokens
		}
		client app {
			redirect_uri http://127.0.0.1:9999/cb
			scopes read
			skip_consent
		}
	}
}
%s {
	handle /oauth2/authorize {
		basic_auth {
			alice %s
		}
		oauth2_server
	}
	oauth2_server
}
%s {
	handle /strict {
		oauth2_guard read {
			dpop required
		}
		reverse_proxy %s
	}
	handle {
		oauth2_guard read
		reverse_proxy %s
	}
}
`, dpopAdminPort, dpopAuthBase, format, extra, secretHash, secretHash, dpopAuthBase, aliceHash, dpopAPIBase, upstreamAddr, upstreamAddr)
}

func startDPoPCaddy(t *testing.T, config string) {
	t.Helper()
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: dpopAdminPort})
	tester.InitServer(config, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// dpopToken posts a token request with an optional proof.
func dpopToken(t *testing.T, form url.Values, user, proof string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, dpopAuthBase+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, "s3cret")
	}
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp, body
}

// dpopCall calls the API with scheme ("DPoP" or "Bearer") and an optional
// proof.
func dpopCall(t *testing.T, method, u, scheme, tok, proof string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	req.Header.Set("Authorization", scheme+" "+tok)
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// wantDenied checks a guard refusal: status, and the error of the
// challenges' scheme.
func wantDenied(t *testing.T, what string, resp *http.Response, status int, errCode string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("%s: %d, want %d", what, resp.StatusCode, status)
		return
	}
	all := strings.Join(resp.Header.Values("WWW-Authenticate"), " | ")
	if !strings.Contains(all, `error="`+errCode+`"`) {
		t.Errorf("%s: challenges %q lack error %s", what, all, errCode)
	}
	if !strings.Contains(all, `DPoP realm="api", algs="ES256 ES384 EdDSA RS256 PS256"`) {
		t.Errorf("%s: challenges %q lack the DPoP one", what, all)
	}
}

func TestDPoPEndToEnd(t *testing.T) {
	up := newUpstream(t)
	startDPoPCaddy(t, dpopConfig(up.URL, "jwt", ""))
	tokenURL := dpopAuthBase + "/oauth2/token"
	api := dpopAPIBase + "/things"
	key := newDPoPKey(t, jose.ES256)

	// Metadata lists the algorithms (RFC 9449 §5.1).
	resp, err := http.Get(dpopAuthBase + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if got := fmt.Sprint(md["dpop_signing_alg_values_supported"]); got != "[ES256 ES384 EdDSA RS256 PS256]" {
		t.Errorf("dpop_signing_alg_values_supported %s", got)
	}

	cc := url.Values{"grant_type": {"client_credentials"}}
	resp, body := dpopToken(t, cc, "svc", key.proof(t, "POST", tokenURL, "", proofOpts{}))
	if resp.StatusCode != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("token with a proof: %d %v", resp.StatusCode, body)
	}
	at := body["access_token"].(string)
	// cnf.jkt in the JWT (RFC 9449 §6.1) is the thumbprint of our key.
	parsed, err := josejwt.ParseSigned(at, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Cnf struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	_ = parsed.UnsafeClaimsWithoutVerification(&claims)
	if claims.Cnf.JKT != key.jkt(t) {
		t.Errorf("cnf.jkt %q, want %q", claims.Cnf.JKT, key.jkt(t))
	}
	// Introspection says it too (§6.2).
	introspect := func(tok string) map[string]any {
		req, _ := http.NewRequest(http.MethodPost, dpopAuthBase+"/oauth2/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", "s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&b)
		return b
	}
	if b := introspect(at); b["token_type"] != "DPoP" || fmt.Sprint(b["cnf"]) != "map[jkt:"+key.jkt(t)+"]" {
		t.Errorf("introspection of a bound token: %v", b)
	}

	ok := key.proof(t, "GET", api, at, proofOpts{})
	if resp := dpopCall(t, "GET", api, "DPoP", at, ok); resp.StatusCode != 200 {
		t.Fatalf("DPoP call: %d %v", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
	// htu ignores the query (§4.3).
	if resp := dpopCall(t, "GET", api+"?page=2", "DPoP", at, key.proof(t, "GET", api, at, proofOpts{})); resp.StatusCode != 200 {
		t.Errorf("DPoP call with a query: %d", resp.StatusCode)
	}

	other := newDPoPKey(t, jose.EdDSA)
	for _, c := range []struct {
		name, method, u, scheme, proof string
		status                         int
		code                           string
	}{
		{"replayed proof", "GET", api, "DPoP", ok, 401, "invalid_dpop_proof"},
		{"bound token as Bearer", "GET", api, "Bearer", "", 401, "invalid_token"},
		{"bound token as Bearer with a proof", "GET", api, "Bearer", key.proof(t, "GET", api, at, proofOpts{}), 401, "invalid_token"},
		{"DPoP without a proof", "GET", api, "DPoP", "", 401, "invalid_dpop_proof"},
		{"proof for another URL", "GET", api, "DPoP", key.proof(t, "GET", dpopAPIBase+"/other", at, proofOpts{}), 401, "invalid_dpop_proof"},
		{"proof for another host", "GET", api, "DPoP", key.proof(t, "GET", "http://127.0.0.1:20741/things", at, proofOpts{}), 401, "invalid_dpop_proof"},
		{"proof for another method", "GET", api, "DPoP", key.proof(t, "POST", api, at, proofOpts{}), 401, "invalid_dpop_proof"},
		{"proof from another key", "GET", api, "DPoP", other.proof(t, "GET", api, at, proofOpts{}), 401, "invalid_dpop_proof"},
		{"stale iat", "GET", api, "DPoP", key.proof(t, "GET", api, at, proofOpts{iat: time.Now().Add(-5 * time.Minute)}), 401, "invalid_dpop_proof"},
		{"iat in the future", "GET", api, "DPoP", key.proof(t, "GET", api, at, proofOpts{iat: time.Now().Add(5 * time.Minute)}), 401, "invalid_dpop_proof"},
		{"wrong ath", "GET", api, "DPoP", key.proof(t, "GET", api, "", proofOpts{ath: "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"}), 401, "invalid_dpop_proof"},
		{"no ath", "GET", api, "DPoP", key.proof(t, "GET", api, "", proofOpts{}), 401, "invalid_dpop_proof"},
		{"alg none", "GET", api, "DPoP", unsignedProof(t, key, "none", "GET", api), 401, "invalid_dpop_proof"},
		{"symmetric key", "GET", api, "DPoP", unsignedProof(t, key, "HS256", "GET", api), 401, "invalid_dpop_proof"},
	} {
		wantDenied(t, c.name, dpopCall(t, c.method, c.u, c.scheme, at, c.proof), c.status, c.code)
	}

	// A client registered with dpop_bound_access_tokens must send a proof.
	resp, body = dpopToken(t, cc, "bound", "")
	if resp.StatusCode != 400 || body["error"] != "invalid_dpop_proof" {
		t.Errorf("bound client without a proof: %d %v", resp.StatusCode, body)
	}
	if resp, body = dpopToken(t, cc, "bound", key.proof(t, "POST", tokenURL, "", proofOpts{})); resp.StatusCode != 200 || body["token_type"] != "DPoP" {
		t.Errorf("bound client with a proof: %d %v", resp.StatusCode, body)
	}
	// The token endpoint refuses bad proofs with 400 (RFC 9449 §5).
	for name, p := range map[string]string{
		"replayed":        "",
		"another URL":     key.proof(t, "POST", dpopAPIBase+"/oauth2/token", "", proofOpts{}),
		"another method":  key.proof(t, "GET", tokenURL, "", proofOpts{}),
		"stale":           key.proof(t, "POST", tokenURL, "", proofOpts{iat: time.Now().Add(-5 * time.Minute)}),
		"alg none":        unsignedProof(t, key, "none", "POST", tokenURL),
		"symmetric key":   unsignedProof(t, key, "HS256", "POST", tokenURL),
		"two DPoP values": key.proof(t, "POST", tokenURL, "", proofOpts{}) + ", " + key.proof(t, "POST", tokenURL, "", proofOpts{}),
	} {
		if name == "replayed" {
			p = key.proof(t, "POST", tokenURL, "", proofOpts{})
			if resp, _ := dpopToken(t, cc, "svc", p); resp.StatusCode != 200 {
				t.Fatalf("first use: %d", resp.StatusCode)
			}
		}
		if resp, body := dpopToken(t, cc, "svc", p); resp.StatusCode != 400 || body["error"] != "invalid_dpop_proof" {
			t.Errorf("token endpoint, %s proof: %d %v", name, resp.StatusCode, body)
		}
	}

	// An unbound token passes as Bearer, but not on the route that
	// requires DPoP; a bound one passes there.
	resp, body = dpopToken(t, cc, "svc", "")
	if body["token_type"] != "Bearer" {
		t.Fatalf("token without a proof: %v", body)
	}
	plain := body["access_token"].(string)
	if resp := dpopCall(t, "GET", api, "Bearer", plain, ""); resp.StatusCode != 200 {
		t.Errorf("bearer token as Bearer: %d", resp.StatusCode)
	}
	strict := dpopAPIBase + "/strict"
	wantDenied(t, "unbound token on a dpop required route", dpopCall(t, "GET", strict, "Bearer", plain, ""), 401, "invalid_token")
	if resp := dpopCall(t, "GET", strict, "DPoP", at, key.proof(t, "GET", strict, at, proofOpts{})); resp.StatusCode != 200 {
		t.Errorf("bound token on a dpop required route: %d", resp.StatusCode)
	}

	t.Run("code bound by dpop_jkt, refresh keeps the binding", func(t *testing.T) {
		app := &oauth2.Config{
			ClientID: "app", RedirectURL: "http://127.0.0.1:9999/cb", Scopes: []string{"read"},
			Endpoint: oauth2.Endpoint{AuthURL: dpopAuthBase + "/oauth2/authorize", TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams},
		}
		verifier := oauth2.GenerateVerifier()
		code := authorize(t, app, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("dpop_jkt", key.jkt(t)))
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"app"},
			"redirect_uri": {"http://127.0.0.1:9999/cb"}, "code_verifier": {verifier}}
		if resp, body := dpopToken(t, form, "", other.proof(t, "POST", tokenURL, "", proofOpts{})); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
			t.Errorf("code bound by dpop_jkt, proof of another key: %d %v", resp.StatusCode, body)
		}
		code = authorize(t, app, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("dpop_jkt", key.jkt(t)))
		form.Set("code", code)
		if resp, body := dpopToken(t, form, "", ""); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
			t.Errorf("code bound by dpop_jkt, no proof: %d %v", resp.StatusCode, body)
		}
		code = authorize(t, app, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("dpop_jkt", key.jkt(t)))
		form.Set("code", code)
		resp, body := dpopToken(t, form, "", key.proof(t, "POST", tokenURL, "", proofOpts{}))
		if resp.StatusCode != 200 || body["token_type"] != "DPoP" {
			t.Fatalf("code bound by dpop_jkt, its key: %d %v", resp.StatusCode, body)
		}
		rt := body["refresh_token"].(string)
		refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}
		// §5.0: a public client's refresh token needs the same key.
		if resp, body := dpopToken(t, refresh, "", ""); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
			t.Errorf("refresh without a proof: %d %v", resp.StatusCode, body)
		}
		if resp, body := dpopToken(t, refresh, "", other.proof(t, "POST", tokenURL, "", proofOpts{})); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
			t.Errorf("refresh with another key: %d %v", resp.StatusCode, body)
		}
		resp, body = dpopToken(t, refresh, "", key.proof(t, "POST", tokenURL, "", proofOpts{}))
		if resp.StatusCode != 200 || body["token_type"] != "DPoP" {
			t.Fatalf("refresh with its key (the refresh token survived the refused tries): %d %v", resp.StatusCode, body)
		}
		at2 := body["access_token"].(string)
		if resp := dpopCall(t, "GET", api, "DPoP", at2, key.proof(t, "GET", api, at2, proofOpts{})); resp.StatusCode != 200 {
			t.Errorf("refreshed token with its key: %d", resp.StatusCode)
		}
		wantDenied(t, "refreshed token as Bearer", dpopCall(t, "GET", api, "Bearer", at2, ""), 401, "invalid_token")
		refresh.Set("refresh_token", body["refresh_token"].(string))
		if resp, body := dpopToken(t, refresh, "", other.proof(t, "POST", tokenURL, "", proofOpts{})); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
			t.Errorf("rotated refresh token with another key: %d %v", resp.StatusCode, body)
		}
		// A malformed dpop_jkt is refused at the authorization endpoint.
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest(http.MethodGet, app.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("dpop_jkt", "short")), nil)
		req.SetBasicAuth("alice", "alice-password")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); !strings.Contains(loc, "error=invalid_request") {
			t.Errorf("malformed dpop_jkt: %d %s", resp.StatusCode, loc)
		}
	})

	// Metrics count proofs by result and reason.
	resp, err = http.Get(fmt.Sprintf("http://localhost:%d/metrics", dpopAdminPort))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`caddy_oauth2_dpop_proofs_total{reason="",result="accepted"}`,
		`caddy_oauth2_dpop_proofs_total{reason="replay",result="refused"}`,
		`caddy_oauth2_dpop_proofs_total{reason="htu",result="refused"}`,
		`caddy_oauth2_dpop_proofs_total{reason="jkt",result="refused"}`,
		`caddy_oauth2_guard_requests_total{result="invalid_dpop_proof"}`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// Server nonces (RFC 9449 §8, §9), with opaque tokens: the token endpoint
// answers use_dpop_nonce with 400, the guard with 401, both with a
// DPoP-Nonce header, and a proof with that nonce passes.
func TestDPoPNonceOpaque(t *testing.T) {
	up := newUpstream(t)
	startDPoPCaddy(t, dpopConfig(up.URL, "opaque", "dpop {\n\t\t\tnonce\n\t\t}"))
	tokenURL := dpopAuthBase + "/oauth2/token"
	api := dpopAPIBase + "/things"
	key := newDPoPKey(t, jose.EdDSA)
	cc := url.Values{"grant_type": {"client_credentials"}}

	resp, body := dpopToken(t, cc, "svc", key.proof(t, "POST", tokenURL, "", proofOpts{}))
	nonce := resp.Header.Get("DPoP-Nonce")
	if resp.StatusCode != 400 || body["error"] != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("token request without a nonce: %d %v nonce %q", resp.StatusCode, body, nonce)
	}
	resp, body = dpopToken(t, cc, "svc", key.proof(t, "POST", tokenURL, "", proofOpts{nonce: nonce}))
	if resp.StatusCode != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("token request with the nonce: %d %v", resp.StatusCode, body)
	}
	at := body["access_token"].(string)
	if resp, body := dpopToken(t, cc, "svc", key.proof(t, "POST", tokenURL, "", proofOpts{nonce: "bm90LWEtbm9uY2Utb2YtdGhpcy1zZXJ2ZXI"})); resp.StatusCode != 400 || body["error"] != "use_dpop_nonce" {
		t.Errorf("forged nonce: %d %v", resp.StatusCode, body)
	}

	resp = dpopCall(t, "GET", api, "DPoP", at, key.proof(t, "GET", api, at, proofOpts{}))
	wantDenied(t, "guard without a nonce", resp, 401, "use_dpop_nonce")
	if resp.Header.Get("DPoP-Nonce") == "" {
		t.Error("guard's use_dpop_nonce without a DPoP-Nonce header")
	}
	if resp := dpopCall(t, "GET", api, "DPoP", at, key.proof(t, "GET", api, at, proofOpts{nonce: resp.Header.Get("DPoP-Nonce")})); resp.StatusCode != 200 {
		t.Errorf("guard with the nonce: %d %v", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
	// The opaque token's binding is kept by the store.
	wantDenied(t, "opaque bound token as Bearer", dpopCall(t, "GET", api, "Bearer", at, ""), 401, "invalid_token")
	other := newDPoPKey(t, jose.ES256)
	wantDenied(t, "opaque bound token, another key", dpopCall(t, "GET", api, "DPoP", at, other.proof(t, "GET", api, at, proofOpts{nonce: nonce})), 401, "invalid_dpop_proof")
}

// The binding of opaque tokens and of public clients' refresh tokens and
// codes is kept by the SQL store too (SQLite always, PostgreSQL with
// OAUTH2_TEST_POSTGRES_DSN).
func TestDPoPSQLStores(t *testing.T) {
	stores := map[string]string{
		"sqlite": fmt.Sprintf("sql {\n\t\t\tdialect sqlite\n\t\t\tdsn %q\n\t\t\tcreate_schema\n\t\t}", t.TempDir()+"/dpop.db"),
	}
	if dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN"); dsn != "" {
		stores["postgres"] = fmt.Sprintf("sql {\n\t\t\tdialect postgres\n\t\t\tdsn %q\n\t\t\ttable_prefix dpop_\n\t\t\tcreate_schema\n\t\t}", dsn)
	} else {
		t.Log("set OAUTH2_TEST_POSTGRES_DSN to run against PostgreSQL too")
	}
	up := newUpstream(t)
	tokenURL := dpopAuthBase + "/oauth2/token"
	api := dpopAPIBase + "/things"
	for name, st := range stores {
		t.Run(name, func(t *testing.T) {
			startDPoPCaddy(t, dpopConfig(up.URL, "opaque", "access_token_store "+st+"\n\t\tauthorization_code_store "+st))
			key, other := newDPoPKey(t, jose.ES256), newDPoPKey(t, jose.EdDSA)
			resp, body := dpopToken(t, url.Values{"grant_type": {"client_credentials"}}, "svc", key.proof(t, "POST", tokenURL, "", proofOpts{}))
			if resp.StatusCode != 200 || body["token_type"] != "DPoP" {
				t.Fatalf("token: %d %v", resp.StatusCode, body)
			}
			at := body["access_token"].(string)
			if resp := dpopCall(t, "GET", api, "DPoP", at, key.proof(t, "GET", api, at, proofOpts{})); resp.StatusCode != 200 {
				t.Errorf("bound token with its proof: %d", resp.StatusCode)
			}
			wantDenied(t, "bound token as Bearer", dpopCall(t, "GET", api, "Bearer", at, ""), 401, "invalid_token")
			wantDenied(t, "another key", dpopCall(t, "GET", api, "DPoP", at, other.proof(t, "GET", api, at, proofOpts{})), 401, "invalid_dpop_proof")

			app := &oauth2.Config{
				ClientID: "app", RedirectURL: "http://127.0.0.1:9999/cb", Scopes: []string{"read"},
				Endpoint: oauth2.Endpoint{AuthURL: dpopAuthBase + "/oauth2/authorize", TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams},
			}
			verifier := oauth2.GenerateVerifier()
			form := url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"},
				"redirect_uri": {"http://127.0.0.1:9999/cb"}, "code_verifier": {verifier}}
			form.Set("code", authorize(t, app, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("dpop_jkt", key.jkt(t))))
			if resp, body := dpopToken(t, form, "", other.proof(t, "POST", tokenURL, "", proofOpts{})); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
				t.Errorf("code bound by dpop_jkt, another key: %d %v", resp.StatusCode, body)
			}
			form.Set("code", authorize(t, app, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("dpop_jkt", key.jkt(t))))
			resp, body = dpopToken(t, form, "", key.proof(t, "POST", tokenURL, "", proofOpts{}))
			if resp.StatusCode != 200 {
				t.Fatalf("code with its key: %d %v", resp.StatusCode, body)
			}
			refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)}, "client_id": {"app"}}
			if resp, body := dpopToken(t, refresh, "", other.proof(t, "POST", tokenURL, "", proofOpts{})); resp.StatusCode != 400 || body["error"] != "invalid_grant" {
				t.Errorf("refresh with another key: %d %v", resp.StatusCode, body)
			}
			if resp, body := dpopToken(t, refresh, "", key.proof(t, "POST", tokenURL, "", proofOpts{})); resp.StatusCode != 200 || body["token_type"] != "DPoP" {
				t.Errorf("refresh with its key: %d %v", resp.StatusCode, body)
			}
		})
	}
}
