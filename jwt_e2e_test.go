package oauth2

// End-to-end tests of JWT access tokens (RFC 9068) through a real Caddy:
// issued at the token endpoint, verified by an independent JOSE library
// (lestrrat-go/jwx) against the served JWKS, passed or refused by the guard,
// introspected, revoked and rotated.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/lestrrat-go/jwx/v3/jwk"
	jwxjwt "github.com/lestrrat-go/jwx/v3/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/cache"
)

const (
	jwtAuthBase  = "http://localhost:20480"
	jwtAPIBase   = "http://localhost:20481"
	jwtAdminPort = 20499
	jwtAudience  = "https://api.example"
	jwtOrders    = "https://orders.example"
)

// jwtConfig is a configuration issuing JWT access tokens; extra goes into
// the oauth2 block.
func jwtConfig(upstreamAddr, extra string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	default_bind 127.0.0.1
	http_port 20480
	https_port 20482
	grace_period 1ns
	skip_install_trust
	oauth2 {
		issuer %s
		access_token_format jwt
		audience %s
		%s
		client svc {
			secret_hash %s
			redirect_uri http://127.0.0.1:9999/cb
			grant_types authorization_code refresh_token client_credentials
			scopes read write
			resources %s
			introspect
		}
		client app {
			redirect_uri http://127.0.0.1:9999/cb
			scopes read write
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
	handle /orders {
		oauth2_guard read {
			audience %s
		}
		reverse_proxy %s
	}
	handle {
		oauth2_guard read
		reverse_proxy %s {
			header_up X-User {http.auth.user.id}
			header_up X-Scope {oauth2.scope}
			header_up X-Sub {oauth2.claims.sub}
			header_up X-Aud {oauth2.claims.aud}
			header_up X-Client-Claim {oauth2.claims.client_id}
			header_up X-Exp {oauth2.claims.exp}
		}
	}
}
`, jwtAdminPort, jwtAuthBase, jwtAudience, extra, secretHash, jwtOrders, jwtAuthBase, aliceHash,
		jwtAPIBase, jwtOrders, upstreamAddr, upstreamAddr)
}

func startJWTCaddy(t *testing.T, config string) {
	t.Helper()
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: jwtAdminPort})
	tester.InitServer(config, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

func jwtCC(scopes ...string) *clientcredentials.Config {
	return &clientcredentials.Config{
		ClientID: "svc", ClientSecret: "s3cret", TokenURL: jwtAuthBase + "/oauth2/token",
		Scopes: scopes, AuthStyle: oauth2.AuthStyleInHeader,
	}
}

func jwtPost(t *testing.T, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, jwtAuthBase+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// wantGuard asks the guard at path with bearer and checks the status, and
// for 401 the RFC 6750 invalid_token challenge.
func wantGuard(t *testing.T, what, path, bearer string, status int) {
	t.Helper()
	resp, body := get(t, nil, jwtAPIBase+path, bearer)
	if resp.StatusCode != status {
		t.Fatalf("%s: guard answered %d, want %d: %s", what, resp.StatusCode, status, body)
	}
	if status == http.StatusUnauthorized {
		if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) {
			t.Fatalf("%s: challenge %q lacks invalid_token", what, ch)
		}
	}
}

// fetchJWKS gets the served key set with the independent library.
func fetchJWKS(t *testing.T) jwk.Set {
	t.Helper()
	set, err := jwk.Fetch(context.Background(), jwtAuthBase+"/.well-known/jwks.json")
	if err != nil {
		t.Fatalf("fetching the JWKS: %v", err)
	}
	return set
}

// verifyIndependently verifies raw with jwx against the served JWKS and
// checks the RFC 9068 claims.
func verifyIndependently(t *testing.T, raw, wantSub string, wantAud ...string) jwxjwt.Token {
	t.Helper()
	tok, err := jwxjwt.Parse([]byte(raw), jwxjwt.WithKeySet(fetchJWKS(t)), jwxjwt.WithValidate(true),
		jwxjwt.WithIssuer(jwtAuthBase), jwxjwt.WithAudience(wantAud[0]))
	if err != nil {
		t.Fatalf("jwx does not verify our token: %v", err)
	}
	if sub, _ := tok.Subject(); sub != wantSub {
		t.Errorf("sub = %q, want %q", sub, wantSub)
	}
	if aud, _ := tok.Audience(); strings.Join(aud, " ") != strings.Join(wantAud, " ") {
		t.Errorf("aud = %v, want %v", aud, wantAud)
	}
	var clientID, scope string
	if err := tok.Get("client_id", &clientID); err != nil || clientID != "svc" && clientID != "app" {
		t.Errorf("client_id = %q, %v", clientID, err)
	}
	if err := tok.Get("scope", &scope); err != nil || scope == "" {
		t.Errorf("scope = %q, %v", scope, err)
	}
	iat, _ := tok.IssuedAt()
	exp, _ := tok.Expiration()
	jti, _ := tok.JwtID()
	if iat.IsZero() || exp.Sub(iat) != time.Hour || jti == "" {
		t.Errorf("iat %v, exp %v, jti %q", iat, exp, jti)
	}
	// RFC 9068 §2.1: the typ header.
	hdr := decodeSegment(t, raw, 0)
	if hdr["typ"] != "at+jwt" || hdr["kid"] == nil {
		t.Errorf("header %v, want typ at+jwt and a kid", hdr)
	}
	return tok
}

func decodeSegment(t *testing.T, raw string, i int) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// reencode replaces segment i of raw by v, keeping the others.
func reencode(t *testing.T, raw string, i int, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(raw, ".")
	parts[i] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestJWTEndToEnd(t *testing.T) {
	up := newUpstream(t)
	startJWTCaddy(t, jwtConfig(up.URL, ""))
	ctx := context.Background()

	// RFC 8414: the metadata names the key set.
	resp, body := get(t, nil, jwtAuthBase+"/.well-known/oauth-authorization-server", "")
	var meta map[string]any
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &meta) != nil || meta["jwks_uri"] != jwtAuthBase+"/.well-known/jwks.json" {
		t.Fatalf("metadata %d %s lacks the jwks_uri", resp.StatusCode, body)
	}
	if n := fetchJWKS(t).Len(); n != 1 {
		t.Fatalf("the JWKS holds %d keys, want the one generated", n)
	}

	tok, err := jwtCC("read").Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw := tok.AccessToken
	verifyIndependently(t, raw, "svc", jwtAudience)

	wantGuard(t, "our JWT", "/", raw, http.StatusOK)
	h := up.last(t)
	if h.Get("X-User") != "svc" || h.Get("X-Sub") != "svc" || h.Get("X-Aud") != jwtAudience ||
		h.Get("X-Scope") != "read" || h.Get("X-Client-Claim") != "svc" || len(h.Get("X-Exp")) != 10 {
		t.Fatalf("upstream saw %v", h)
	}
	if h.Get("Authorization") != "" {
		t.Fatal("the token went upstream")
	}
	// The token is for jwtAudience, not the orders API.
	wantGuard(t, "wrong audience", "/orders", raw, http.StatusUnauthorized)

	// RFC 8707: a registered resource becomes the audience.
	orders, err := (&clientcredentials.Config{ClientID: "svc", ClientSecret: "s3cret", TokenURL: jwtAuthBase + "/oauth2/token",
		Scopes: []string{"read"}, AuthStyle: oauth2.AuthStyleInHeader, EndpointParams: url.Values{"resource": {jwtOrders}}}).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	verifyIndependently(t, orders.AccessToken, "svc", jwtOrders)
	wantGuard(t, "orders token at orders", "/orders", orders.AccessToken, http.StatusOK)
	up.last(t)
	wantGuard(t, "orders token at the default audience", "/", orders.AccessToken, http.StatusUnauthorized)
	if st, body := jwtPost(t, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "resource": {"https://unregistered.example"}}); st != 400 || body["error"] != "invalid_target" {
		t.Fatalf("unregistered resource: %d %v, want 400 invalid_target", st, body)
	}

	// Tampered claims, alg none, HMAC with the public key, a missing typ.
	claims := decodeSegment(t, raw, 1)
	claims["scope"] = "read write"
	wantGuard(t, "tampered", "/", reencode(t, raw, 1, claims), http.StatusUnauthorized)
	hdr := decodeSegment(t, raw, 0)
	none := map[string]any{"alg": "none", "typ": "at+jwt", "kid": hdr["kid"]}
	parts := strings.Split(reencode(t, raw, 0, none), ".")
	wantGuard(t, "alg none", "/", parts[0]+"."+parts[1]+".", http.StatusUnauthorized)
	noTyp := map[string]any{"alg": hdr["alg"], "kid": hdr["kid"]}
	wantGuard(t, "no typ", "/", reencode(t, raw, 0, noTyp), http.StatusUnauthorized)
	wantGuard(t, "hs256 with the public key", "/", hmacWithPublicKey(t, raw), http.StatusUnauthorized)
	wantGuard(t, "garbage", "/", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA", http.StatusUnauthorized)
	wantGuard(t, "the genuine token still", "/", raw, http.StatusOK)
	up.last(t)

	// RFC 7662: introspection knows our JWT.
	if st, body := jwtPost(t, "/oauth2/introspect", url.Values{"token": {raw}}); st != 200 || body["active"] != true || body["client_id"] != "svc" {
		t.Fatalf("introspection: %d %v", st, body)
	}
	// RFC 7009: revoked, it is refused by the guard at once (cache store).
	if st, body := jwtPost(t, "/oauth2/revoke", url.Values{"token": {raw}}); st != 200 {
		t.Fatalf("revoke: %d %v", st, body)
	}
	wantGuard(t, "revoked", "/", raw, http.StatusUnauthorized)
	if st, body := jwtPost(t, "/oauth2/introspect", url.Values{"token": {raw}}); st != 200 || body["active"] != false {
		t.Fatalf("introspection of a revoked token: %d %v", st, body)
	}

	// The authorization code flow: a JWT for alice, refresh rotation, and a
	// replayed refresh token revoking the family, JWTs included.
	cfg := &oauth2.Config{ClientID: "app", RedirectURL: "http://127.0.0.1:9999/cb", Scopes: []string{"read"},
		Endpoint: oauth2.Endpoint{AuthURL: jwtAuthBase + "/oauth2/authorize", TokenURL: jwtAuthBase + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	code := authorize(t, cfg, oauth2.S256ChallengeOption(verifier))
	first, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	verifyIndependently(t, first.AccessToken, "alice", jwtAudience)
	wantGuard(t, "alice's JWT", "/", first.AccessToken, http.StatusOK)
	if h := up.last(t); h.Get("X-User") != "alice" || h.Get("X-Sub") != "alice" {
		t.Fatalf("upstream saw %v", h)
	}
	second, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: first.RefreshToken}).Token()
	if err != nil {
		t.Fatal(err)
	}
	wantGuard(t, "the rotated JWT", "/", second.AccessToken, http.StatusOK)
	up.last(t)
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: first.RefreshToken}).Token(); err == nil {
		t.Fatal("a replayed refresh token was accepted")
	}
	wantGuard(t, "a JWT of a revoked family", "/", second.AccessToken, http.StatusUnauthorized)
	wantGuard(t, "the first JWT of a revoked family", "/", first.AccessToken, http.StatusUnauthorized)
}

// hmacWithPublicKey forges raw's claims under HS256 keyed with the JWKS's
// public key bytes: the classic algorithm confusion.
func hmacWithPublicKey(t *testing.T, raw string) string {
	t.Helper()
	resp, body := get(t, nil, jwtAuthBase+"/.well-known/jwks.json", "")
	if resp.StatusCode != 200 {
		t.Fatal(body)
	}
	hdr := decodeSegment(t, raw, 0)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(body)},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", hdr["kid"]))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := josejwt.Signed(signer).Claims(decodeSegment(t, raw, 1)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return forged
}

// writeKey writes a PEM private key file.
func writeKey(t *testing.T, dir, name string, priv crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestJWTKeyFilesAndRotation signs with key files: an expired or foreign
// token signed with the right key is refused, and after a rotation (the
// new key first, the old one kept) tokens of both keys pass.
func TestJWTKeyFilesAndRotation(t *testing.T) {
	up := newUpstream(t)
	dir := t.TempDir()
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edFile, ecFile := writeKey(t, dir, "ed.pem", edPriv), writeKey(t, dir, "ec.pem", ecPriv)
	startJWTCaddy(t, jwtConfig(up.URL, "signing_key "+edFile))
	ctx := context.Background()

	tok, err := jwtCC("read").Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := tok.AccessToken
	if hdr := decodeSegment(t, old, 0); hdr["alg"] != "EdDSA" {
		t.Fatalf("header %v, want EdDSA", hdr)
	}
	verifyIndependently(t, old, "svc", jwtAudience)
	wantGuard(t, "signed with the key file", "/", old, http.StatusOK)
	up.last(t)

	// Re-signed by us with the right key: only the changed claim is wrong.
	claims := decodeSegment(t, old, 1)
	resign := func(change func(map[string]any)) string {
		c := map[string]any{}
		for k, v := range claims {
			c[k] = v
		}
		change(c)
		hdr := decodeSegment(t, old, 0)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: edPriv, KeyID: hdr["kid"].(string)}},
			(&jose.SignerOptions{}).WithType("at+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := josejwt.Signed(signer).Claims(c).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	wantGuard(t, "re-signed unchanged", "/", resign(func(map[string]any) {}), http.StatusOK)
	up.last(t)
	wantGuard(t, "expired", "/", resign(func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }), http.StatusUnauthorized)
	wantGuard(t, "not yet valid", "/", resign(func(c map[string]any) { c["nbf"] = time.Now().Add(2 * time.Minute).Unix() }), http.StatusUnauthorized)
	wantGuard(t, "wrong issuer", "/", resign(func(c map[string]any) { c["iss"] = "https://evil.example" }), http.StatusUnauthorized)
	wantGuard(t, "wrong audience", "/", resign(func(c map[string]any) { c["aud"] = "https://evil.example" }), http.StatusUnauthorized)
	wantGuard(t, "unknown jti", "/", resign(func(c map[string]any) { c["jti"] = "never-issued" }), http.StatusUnauthorized)

	// Rotation: the EC key signs now, the Ed25519 key stays published.
	startJWTCaddy(t, jwtConfig(up.URL, "signing_key "+ecFile+"\n\t\tsigning_key "+edFile))
	if n := fetchJWKS(t).Len(); n != 2 {
		t.Fatalf("the JWKS holds %d keys after rotation, want 2", n)
	}
	tok, err = jwtCC("read").Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hdr := decodeSegment(t, tok.AccessToken, 0); hdr["alg"] != "ES256" {
		t.Fatalf("header %v, want ES256 after rotation", hdr)
	}
	verifyIndependently(t, tok.AccessToken, "svc", jwtAudience)
	verifyIndependently(t, old, "svc", jwtAudience)
	wantGuard(t, "new key", "/", tok.AccessToken, http.StatusOK)
	up.last(t)
	wantGuard(t, "retired key", "/", old, http.StatusOK)
	up.last(t)

	// Dropping the old key retires its tokens.
	startJWTCaddy(t, jwtConfig(up.URL, "signing_key "+ecFile))
	wantGuard(t, "key withdrawn", "/", old, http.StatusUnauthorized)
}

// keylessStore is a store without the stores.KeyStore capability.
type keylessStore struct{ stores.Store }

func (keylessStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "oauth2.stores.keyless_test", New: func() caddy.Module {
		e, err := cache.New(cache.Config{MaxMemoryMB: 16, Shards: 16})
		if err != nil {
			panic(err)
		}
		return keylessStore{e}
	}}
}

func init() { caddy.RegisterModule(keylessStore{}) }

// TestJWTNeedsKeyStore: generated keys need a store that can keep them; one
// that cannot fails the configuration with a clear error.
func TestJWTNeedsKeyStore(t *testing.T) {
	cfg := `{"apps":{"oauth2":{"access_token_format":"jwt","access_token_store":{"driver":"keyless_test"},
		"clients":[{"id":"svc","secret_hash":"` + secretHash + `","grant_types":["client_credentials"],"scopes":["read"]}]}}}`
	err := caddy.Validate(&caddy.Config{AppsRaw: caddy.ModuleMap{"oauth2": json.RawMessage(mustField(t, cfg))}})
	if err == nil || !strings.Contains(err.Error(), "cannot keep signing keys") {
		t.Fatalf("a keyless store with generated keys: %v", err)
	}
	// With a key file, the same store is fine.
	dir := t.TempDir()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	file := writeKey(t, dir, "k.pem", ed)
	withFile := strings.Replace(cfg, `"access_token_format":"jwt",`, `"access_token_format":"jwt","signing_keys":["`+file+`"],`, 1)
	if err := caddy.Validate(&caddy.Config{AppsRaw: caddy.ModuleMap{"oauth2": json.RawMessage(mustField(t, withFile))}}); err != nil {
		t.Fatalf("a keyless store with a key file: %v", err)
	}
}

// mustField returns apps.oauth2 of a JSON config.
func mustField(t *testing.T, cfg string) []byte {
	t.Helper()
	var c struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		t.Fatal(err)
	}
	return c.Apps["oauth2"]
}

// TestJWTDerivedIssuer: without issuer and audience options, the issuer is
// the site's address, the audience defaults to it, and the guard accepts
// exactly that.
func TestJWTDerivedIssuer(t *testing.T) {
	up := newUpstream(t)
	cfg := jwtConfig(up.URL, "")
	cfg = strings.Replace(cfg, "issuer "+jwtAuthBase+"\n", "", 1)
	cfg = strings.Replace(cfg, "audience "+jwtAudience+"\n", "", 1)
	if strings.Contains(cfg, "issuer ") || strings.Contains(cfg, "audience "+jwtAudience) {
		t.Fatal("the config still names an issuer or audience")
	}
	startJWTCaddy(t, cfg)
	tok, err := jwtCC("read").Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	claims := decodeSegment(t, tok.AccessToken, 1)
	if claims["iss"] != jwtAuthBase || claims["aud"] != jwtAuthBase {
		t.Fatalf("iss %v, aud %v; want both %s", claims["iss"], claims["aud"], jwtAuthBase)
	}
	verifyIndependently(t, tok.AccessToken, "svc", jwtAuthBase)
	wantGuard(t, "derived issuer and audience", "/", tok.AccessToken, http.StatusOK)
	up.last(t)
	wantGuard(t, "another audience", "/orders", tok.AccessToken, http.StatusUnauthorized)
}

// TestJWTStoreOutage: with generated keys in a store that is down, the
// token endpoint and the JWKS answer 503, and so does the guard for a token
// claiming to be ours: never a pass, never a 500.
func TestJWTStoreOutage(t *testing.T) {
	up := newUpstream(t)
	startJWTCaddy(t, jwtConfig(up.URL, `
		store_timeout 1s
		access_token_store sql {
			dialect mysql
			dsn "oauth2:oauth2@tcp(127.0.0.1:20497)/nowhere"
		}`))
	st, body := jwtPost(t, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}})
	if st != 503 || body["error"] != "temporarily_unavailable" {
		t.Fatalf("token endpoint during an outage: %d %v", st, body)
	}
	if resp, body := get(t, nil, jwtAuthBase+"/.well-known/jwks.json", ""); resp.StatusCode != 503 {
		t.Fatalf("JWKS during an outage: %d %s", resp.StatusCode, body)
	}
	// A token claiming to be ours, signed by a key the gateway cannot look up.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: "some-kid"}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := josejwt.Signed(signer).Claims(map[string]any{"iss": jwtAuthBase, "aud": jwtAudience, "jti": "x",
		"exp": time.Now().Add(time.Hour).Unix()}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, nil, jwtAPIBase+"/", raw); resp.StatusCode != 503 {
		t.Fatalf("guard during an outage: %d %s, want 503", resp.StatusCode, body)
	}
	select {
	case <-up.seen:
		t.Fatal("a request reached the upstream during the outage")
	default:
	}
}
