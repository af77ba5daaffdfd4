package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokengate/caddy-oauth2/dpop"
	"github.com/tokengate/caddy-oauth2/token"
)

type testKey struct{ k *ecdsa.PrivateKey }

func newTestKey(t *testing.T) testKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{k}
}

func (k testKey) jkt() string {
	tp, _ := (&jose.JSONWebKey{Key: k.k.Public()}).Thumbprint(crypto.SHA256)
	return base64.RawURLEncoding.EncodeToString(tp)
}

func (k testKey) proof(t *testing.T, htu, nonce string) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.k}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]any{"jti": rand.Text(), "htm": "POST", "htu": htu, "iat": time.Now().Unix()}
	if nonce != "" {
		c["nonce"] = nonce
	}
	p, err := josejwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// postDPoP posts to the token endpoint as clientID with a DPoP proof ("" none).
func (e *env) postDPoP(clientID string, form url.Values, proof string) result {
	e.t.Helper()
	if _, ok := secrets[clientID]; !ok {
		form.Set("client_id", clientID)
	}
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if s, ok := secrets[clientID]; ok {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(s))
	}
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	return e.do(req)
}

func TestTokenEndpointDPoP(t *testing.T) {
	v := &dpop.Verifier{Replay: dpop.NewReplayCache(1000, 1)}
	e := newEnv(t, func(c *Config) {
		c.DPoP = v
		c.Clients["bound"] = &Client{SecretHash: hash(t, svcSecret), GrantTypes: []string{"client_credentials"}, Scopes: []string{"read"}, DPoPBoundAccessTokens: true}
	})
	secrets["bound"] = svcSecret
	t.Cleanup(func() { delete(secrets, "bound") })
	htu := e.ts.URL + TokenPath
	key, other := newTestKey(t), newTestKey(t)
	cc := func() url.Values { return url.Values{"grant_type": {"client_credentials"}} }

	res := e.postDPoP("svc", cc(), key.proof(t, htu, ""))
	body := res.json(t)
	if res.status != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("client_credentials with a proof: %d %v", res.status, body)
	}
	in := e.introspect(body["access_token"].(string))
	if cnf, _ := in["cnf"].(map[string]any); in["token_type"] != "DPoP" || cnf["jkt"] != key.jkt() {
		t.Errorf("introspection: %v", in)
	}
	wantError(t, e.postDPoP("bound", cc(), ""), 400, "invalid_dpop_proof")
	wantError(t, e.postDPoP("svc", cc(), key.proof(t, e.ts.URL+"/elsewhere", "")), 400, "invalid_dpop_proof")
	if res := e.postDPoP("bound", cc(), key.proof(t, htu, "")); res.status != 200 {
		t.Errorf("bound client with a proof: %d %s", res.status, res.body)
	}

	// Public client: refresh bound to the key (RFC 9449 §5.0).
	verifier, challenge := pkce()
	params := authParams("pub", "code_challenge", challenge, "code_challenge_method", "S256", "dpop_jkt", key.jkt())
	redeem := func(code, proof string) result {
		return e.postDPoP("pub", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}}, proof)
	}
	wantError(t, redeem(e.code(params), other.proof(t, htu, "")), 400, "invalid_grant")
	res = redeem(e.code(params), key.proof(t, htu, ""))
	body = res.json(t)
	if res.status != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("code bound by dpop_jkt: %d %v", res.status, body)
	}
	refresh := func(rt, proof string) result {
		return e.postDPoP("pub", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, proof)
	}
	rt := body["refresh_token"].(string)
	wantError(t, refresh(rt, ""), 400, "invalid_grant")
	wantError(t, refresh(rt, other.proof(t, htu, "")), 400, "invalid_grant")
	res = refresh(rt, key.proof(t, htu, ""))
	if body = res.json(t); res.status != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("refresh with the key: %d %v", res.status, body)
	}
	wantError(t, refresh(body["refresh_token"].(string), other.proof(t, htu, "")), 400, "invalid_grant")

	// Confidential client: the refresh token is not bound; each access token
	// is bound to the proof it was refreshed with.
	verifier, challenge = pkce()
	params = authParams("conf", "code_challenge", challenge, "code_challenge_method", "S256")
	res = e.postDPoP("conf", url.Values{"grant_type": {"authorization_code"}, "code": {e.code(params)}, "code_verifier": {verifier}}, key.proof(t, htu, ""))
	if body = res.json(t); res.status != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("confidential code with a proof: %d %v", res.status, body)
	}
	res = e.postDPoP("conf", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)}}, "")
	if body = res.json(t); res.status != 200 || body["token_type"] != "Bearer" {
		t.Errorf("confidential refresh without a proof: %d %v", res.status, body)
	}

	// A malformed dpop_jkt is refused at the authorization endpoint.
	res = e.authorize(authParams("pub", "code_challenge", challenge, "code_challenge_method", "S256", "dpop_jkt", "not-a-thumbprint"), testUser)
	wantRedirectError(t, res, pubRedirect, "invalid_request", "")

	// Metadata.
	mres := e.do(must(http.NewRequest(http.MethodGet, e.ts.URL+MetadataPath, nil)))
	if !strings.Contains(mres.body, `"dpop_signing_alg_values_supported":["ES256","ES384","EdDSA","RS256","PS256"]`) {
		t.Errorf("metadata: %s", mres.body)
	}
}

func must(r *http.Request, err error) *http.Request {
	if err != nil {
		panic(err)
	}
	return r
}

func TestTokenEndpointDPoPNonceAndRequired(t *testing.T) {
	v := &dpop.Verifier{Replay: dpop.NewReplayCache(1000, 1), Nonces: dpop.NewNonces(token.DeriveKey([]byte("s"), token.PurposeDPoPNonce), 0)}
	e := newEnv(t, func(c *Config) { c.DPoP, c.RequireDPoP = v, true })
	htu := e.ts.URL + TokenPath
	key := newTestKey(t)
	cc := url.Values{"grant_type": {"client_credentials"}}
	wantError(t, e.postDPoP("svc", cc, ""), 400, "invalid_dpop_proof") // required
	res := e.postDPoP("svc", cc, key.proof(t, htu, ""))
	wantError(t, res, 400, "use_dpop_nonce")
	nonce := res.header.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("use_dpop_nonce without DPoP-Nonce")
	}
	if res := e.postDPoP("svc", cc, key.proof(t, htu, nonce)); res.status != 200 || res.header.Get("DPoP-Nonce") == "" {
		t.Errorf("with the nonce: %d %s", res.status, res.body)
	}
	if _, err := New(Config{Clients: testClients(t), Codes: e.store, Tokens: e.store, Hasher: e.hasher, RequireDPoP: true}); err == nil {
		t.Error("RequireDPoP without a verifier accepted")
	}
}
