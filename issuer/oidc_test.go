package issuer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokengate/caddy-oauth2/dpop"
	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/token"
)

const oidcSecret = "oidc-secret"

var (
	ringOnce sync.Once
	ringKeys []*jwt.Key
)

// oidcKeys are an RSA and a P-256 key, made once: RSA keys are slow.
func oidcKeys(t *testing.T) []*jwt.Key {
	ringOnce.Do(func() {
		for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.RS256} {
			k, err := jwt.GenerateAlg(alg, time.Now())
			if err != nil {
				panic(err)
			}
			ringKeys = append(ringKeys, k)
		}
	})
	return ringKeys
}

// withOIDC turns OpenID Connect on with claims read from X-Test-* headers
// and adds the clients "rp" (confidential), "rp2" (another host, ES256)
// and "spa" (public).
func withOIDC(t *testing.T, mod func(*OIDC)) func(*Config) {
	return func(cfg *Config) {
		ring, err := jwt.NewRing(jwt.RingConfig{Keys: oidcKeys(t)})
		if err != nil {
			t.Fatal(err)
		}
		header := func(name string) func(*http.Request) string {
			return func(r *http.Request) string { return r.Header.Get(name) }
		}
		o := &OIDC{
			Ring: ring,
			Claims: []Claim{
				{Name: "email", Value: header("X-Test-Email")},
				{Name: "email_verified", Value: header("X-Test-Email-Verified")},
				{Name: "name", Value: header("X-Test-Name")},
				{Name: "groups", Value: header("X-Test-Groups")},
			},
			AuthTime: func(*http.Request) time.Time { return time.Unix(1893553445, 0) },
		}
		if mod != nil {
			mod(o)
		}
		cfg.OIDC = o
		scopes := []string{"openid", "email", "profile", "groups", "read"}
		cfg.Clients["rp"] = &Client{SecretHash: hash(t, oidcSecret), RedirectURIs: []string{"https://rp.example/cb"}, Scopes: scopes, SkipConsent: true}
		cfg.Clients["rp2"] = &Client{SecretHash: hash(t, oidcSecret), RedirectURIs: []string{"https://rp2.example/cb"}, Scopes: scopes,
			SkipConsent: true, IDTokenSignedResponseAlg: "ES256"}
		cfg.Clients["spa"] = &Client{RedirectURIs: []string{"https://spa-oidc.example/cb"}, Scopes: scopes}
		secrets["rp"], secrets["rp2"] = oidcSecret, oidcSecret
	}
}

// oidcTokens runs the code flow as alice with the claim headers set.
func (e *env) oidcTokens(clientID, scope, nonce string) map[string]any {
	e.t.Helper()
	verifier, challenge := pkce()
	params := authParams(clientID, "scope", scope, "nonce", nonce, "code_challenge", challenge, "code_challenge_method", "S256")
	// The authentication handler in front sets these on every request,
	// the consent form's POST too: the claims are read when the code is.
	user := func(req *http.Request) {
		for k, v := range map[string]string{"X-Test-User": testUser, "X-Test-Email": "alice@example.com", "X-Test-Email-Verified": "true",
			"X-Test-Name": "", "X-Test-Groups": "admins, devs"} {
			req.Header.Set(k, v)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+AuthorizePath+"?"+params.Encode(), nil)
	user(req)
	res := e.do(req)
	if res.status == http.StatusOK {
		form := hiddenFields(res.body)
		form.Set("decision", "approve")
		req, _ = http.NewRequest(http.MethodPost, e.ts.URL+AuthorizePath, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		user(req)
		res = e.do(req)
	}
	_, q := res.location(e.t)
	if q.Get("code") == "" {
		e.t.Fatalf("no code: %d %v", res.status, q)
	}
	tr := e.postAs(TokenPath, clientID, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {verifier}})
	if tr.status != http.StatusOK {
		e.t.Fatalf("token: %d %s", tr.status, tr.body)
	}
	return tr.json(e.t)
}

// idClaims verifies an ID token against the server's JWKS as a relying
// party would, and returns its header's alg and its claims.
func (e *env) idClaims(raw string) (string, map[string]any) {
	e.t.Helper()
	res := e.do(mustGet(e.t, e.ts.URL+JWKSPath))
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(res.body), &set); err != nil {
		e.t.Fatal(err)
	}
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA})
	if err != nil {
		e.t.Fatal(err)
	}
	h := tok.Headers[0]
	if typ := h.ExtraHeaders[jose.HeaderType]; typ != "JWT" {
		e.t.Errorf("typ = %v, want JWT", typ)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		e.t.Fatalf("kid %s not in the JWKS", h.KeyID)
	}
	var c map[string]any
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		e.t.Fatal(err)
	}
	return h.Algorithm, c
}

func mustGet(t *testing.T, u string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func (e *env) userinfo(access string) result {
	e.t.Helper()
	req := mustGet(e.t, e.ts.URL+UserInfoPath)
	if access != "" {
		req.Header.Set("Authorization", "Bearer "+access)
	}
	return e.do(req)
}

func TestOIDCIDToken(t *testing.T) {
	e := newEnv(t, withOIDC(t, nil))
	resp := e.oidcTokens("rp", "openid email groups", "n-0S6_WzA2Mj")
	raw, _ := resp["id_token"].(string)
	if raw == "" {
		t.Fatalf("no id_token in %v", resp)
	}
	alg, c := e.idClaims(raw)
	if alg != "RS256" {
		t.Errorf("alg = %s, want RS256 by default", alg)
	}
	sum := sha256.Sum256([]byte(resp["access_token"].(string)))
	want := map[string]any{
		"iss": e.ts.URL, "sub": testUser, "aud": "rp", "azp": "rp", "nonce": "n-0S6_WzA2Mj",
		"auth_time": float64(1893553445), "email": "alice@example.com", "email_verified": true,
		"groups":  []any{"admins", "devs"},
		"at_hash": base64.RawURLEncoding.EncodeToString(sum[:16]),
	}
	for k, v := range want {
		if got, _ := json.Marshal(c[k]); string(got) != toJSON(v) {
			t.Errorf("%s = %s, want %s", k, got, toJSON(v))
		}
	}
	if c["exp"].(float64)-c["iat"].(float64) != 3600 {
		t.Errorf("lifetime %v, want 3600", c["exp"].(float64)-c["iat"].(float64))
	}
	if c["sid"] == nil {
		t.Error("no sid")
	}
	if _, ok := c["name"]; ok {
		t.Error("name released without the profile scope (and empty)")
	}

	// OIDC Core §12.2: a refresh brings a new ID token, same sub,
	// auth_time and sid, no nonce.
	e.clock.Advance(time.Minute)
	rr := e.postAs(TokenPath, "rp", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {resp["refresh_token"].(string)}})
	if rr.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", rr.status, rr.body)
	}
	r2 := rr.json(t)
	raw2, _ := r2["id_token"].(string)
	if raw2 == "" || raw2 == raw {
		t.Fatalf("refresh gave no new id_token: %v", r2)
	}
	_, c2 := e.idClaims(raw2)
	for _, k := range []string{"sub", "auth_time", "sid", "aud", "email"} {
		if toJSON(c2[k]) != toJSON(c[k]) {
			t.Errorf("refreshed %s = %v, want %v", k, c2[k], c[k])
		}
	}
	if _, ok := c2["nonce"]; ok {
		t.Error("refreshed ID token carries the nonce")
	}
	// A refresh narrowed to a scope without openid brings none.
	rr = e.postAs(TokenPath, "rp", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r2["refresh_token"].(string)}, "scope": {"email"}})
	if rr.status != http.StatusOK || rr.json(t)["id_token"] != nil {
		t.Errorf("refresh without openid: %d %s", rr.status, rr.body)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestOIDCNoOpenIDScope(t *testing.T) {
	e := newEnv(t, withOIDC(t, nil))
	resp := e.oidcTokens("rp", "email read", "")
	if resp["id_token"] != nil {
		t.Errorf("id_token without the openid scope: %v", resp)
	}
	wantChallenge(t, e.userinfo(resp["access_token"].(string)), http.StatusForbidden, "insufficient_scope")
}

func TestOIDCClientAlgAndPairwise(t *testing.T) {
	e := newEnv(t, withOIDC(t, func(o *OIDC) {
		o.SubjectType, o.PairwiseKey = SubjectPairwise, []byte("pairwise key for the test")
		o.IDTokenLifetime = 5 * time.Minute
	}))
	_, c1 := e.idClaims(e.oidcTokens("rp", "openid", "x")["id_token"].(string))
	alg, c2 := e.idClaims(e.oidcTokens("rp2", "openid", "y")["id_token"].(string))
	if alg != "ES256" {
		t.Errorf("alg = %s, want the client's ES256", alg)
	}
	if c1["sub"] == testUser || c1["sub"] == c2["sub"] || c1["sub"] == "" {
		t.Errorf("pairwise subs %v and %v for %s", c1["sub"], c2["sub"], testUser)
	}
	_, again := e.idClaims(e.oidcTokens("rp", "openid", "z")["id_token"].(string))
	if again["sub"] != c1["sub"] {
		t.Errorf("pairwise sub not stable: %v then %v", c1["sub"], again["sub"])
	}
	if c1["exp"].(float64)-c1["iat"].(float64) != 300 {
		t.Errorf("lifetime %v, want 300", c1["exp"].(float64)-c1["iat"].(float64))
	}
	// UserInfo answers the same pairwise sub.
	resp := e.oidcTokens("rp", "openid email", "w")
	if got := e.userinfo(resp["access_token"].(string)).json(t)["sub"]; got != c1["sub"] {
		t.Errorf("userinfo sub %v, want %v", got, c1["sub"])
	}
}

func TestOIDCUserInfo(t *testing.T) {
	e := newEnv(t, withOIDC(t, nil))
	resp := e.oidcTokens("spa", "openid email", "n")
	access := resp["access_token"].(string)
	res := e.userinfo(access)
	if res.status != http.StatusOK {
		t.Fatalf("userinfo: %d %s", res.status, res.body)
	}
	got := res.json(t)
	if got["sub"] != testUser || got["email"] != "alice@example.com" || got["email_verified"] != true || got["groups"] != nil {
		t.Errorf("userinfo = %v", got)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	// POST with the token in the body (RFC 6750 §2.2).
	pr := e.post(UserInfoPath, url.Values{"access_token": {access}})
	if pr.status != http.StatusOK || pr.json(t)["sub"] != testUser {
		t.Errorf("POST userinfo: %d %s", pr.status, pr.body)
	}

	// A refresh narrowed to openid alone: its access token shows no email,
	// and neither does its ID token.
	rr := e.postAs(TokenPath, "spa", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {resp["refresh_token"].(string)}, "scope": {"openid"}})
	if rr.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", rr.status, rr.body)
	}
	narrow := rr.json(t)
	if got := e.userinfo(narrow["access_token"].(string)).json(t); got["sub"] != testUser || got["email"] != nil {
		t.Errorf("userinfo after narrowing to openid = %v", got)
	}
	if _, c := e.idClaims(narrow["id_token"].(string)); c["email"] != nil {
		t.Errorf("narrowed ID token carries email: %v", c)
	}

	// RFC 6750 §3: no token, a bad one, an ID token, a refresh token.
	res = e.userinfo("")
	if res.status != http.StatusUnauthorized || res.header.Get("WWW-Authenticate") != `Bearer realm="userinfo"` {
		t.Errorf("no token: %d %q", res.status, res.header.Get("WWW-Authenticate"))
	}
	wantChallenge(t, e.userinfo("at_bogus"), http.StatusUnauthorized, "invalid_token")
	wantChallenge(t, e.userinfo(resp["id_token"].(string)), http.StatusUnauthorized, "invalid_token")
	wantChallenge(t, e.userinfo(resp["refresh_token"].(string)), http.StatusUnauthorized, "invalid_token")
	// Revoked, then expired.
	if rv := e.postAs(RevokePath, "spa", url.Values{"token": {access}}); rv.status != http.StatusOK {
		t.Fatalf("revoke: %d", rv.status)
	}
	wantChallenge(t, e.userinfo(access), http.StatusUnauthorized, "invalid_token")
	other := e.oidcTokens("spa", "openid", "n")["access_token"].(string)
	e.clock.Advance(2 * time.Hour)
	wantChallenge(t, e.userinfo(other), http.StatusUnauthorized, "invalid_token")
}

func wantChallenge(t *testing.T, res result, status int, code string) {
	t.Helper()
	if res.status != status || !strings.Contains(res.header.Get("WWW-Authenticate"), `error="`+code+`"`) {
		t.Errorf("got %d %q %s, want %d %s", res.status, res.header.Get("WWW-Authenticate"), res.body, status, code)
	}
}

func TestOIDCDiscovery(t *testing.T) {
	e := newEnv(t, withOIDC(t, nil))
	d := e.do(mustGet(t, e.ts.URL+DiscoveryPath)).json(t)
	m := e.do(mustGet(t, e.ts.URL+MetadataPath)).json(t)
	for _, k := range []string{"issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "response_types_supported",
		"grant_types_supported", "token_endpoint_auth_methods_supported", "code_challenge_methods_supported"} {
		if toJSON(d[k]) != toJSON(m[k]) || d[k] == nil {
			t.Errorf("%s: discovery %v, RFC 8414 %v", k, d[k], m[k])
		}
	}
	want := map[string]string{
		"userinfo_endpoint":                     `"` + e.ts.URL + UserInfoPath + `"`,
		"id_token_signing_alg_values_supported": `["RS256","ES256"]`,
		"subject_types_supported":               `["public"]`,
		"response_types_supported":              `["code"]`,
	}
	for k, v := range want {
		if toJSON(d[k]) != v {
			t.Errorf("%s = %s, want %s", k, toJSON(d[k]), v)
		}
	}
	for _, sc := range []string{"openid", "email", "profile", "groups"} {
		if !strings.Contains(toJSON(d["scopes_supported"]), `"`+sc+`"`) {
			t.Errorf("scopes_supported %v lacks %s", d["scopes_supported"], sc)
		}
	}
	if !strings.Contains(toJSON(d["claims_supported"]), `"groups"`) || !strings.Contains(toJSON(d["claims_supported"]), `"sub"`) {
		t.Errorf("claims_supported %v", d["claims_supported"])
	}
	// Without OIDC, no discovery and no UserInfo.
	plain := newEnv(t)
	if plain.srv.Endpoint(DiscoveryPath) != nil || plain.srv.Endpoint(UserInfoPath) != nil {
		t.Error("OpenID Connect endpoints served while off")
	}
}

func TestOIDCConfigErrors(t *testing.T) {
	ring, _ := jwt.NewRing(jwt.RingConfig{Keys: oidcKeys(t)[:1]}) // ES256 only
	for name, o := range map[string]*OIDC{
		"no ring":          {},
		"reserved claim":   {Ring: ring, Claims: []Claim{{Name: "sub", Value: func(*http.Request) string { return "" }}}},
		"duplicate claim":  {Ring: ring, Claims: []Claim{{Name: "a", Value: func(*http.Request) string { return "" }}, {Name: "a", Value: func(*http.Request) string { return "" }}}},
		"bad subject type": {Ring: ring, SubjectType: "other"},
		"pairwise no key":  {Ring: ring, SubjectType: SubjectPairwise},
		// The default RS256 has no key in this ring.
		"no RS256 key": {Ring: ring},
	} {
		cfg := Config{Clients: testClients(t), Codes: newFakeStore(time.Now), Tokens: newFakeStore(time.Now),
			Hasher: token.NewHasher([]byte("test hmac secret")), OIDC: o}
		cfg.Clients["rp"] = &Client{SecretHash: hash(t, oidcSecret), RedirectURIs: []string{"https://rp.example/cb"}, Scopes: []string{"openid"}}
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// UserInfo takes DPoP-bound access tokens with a proof of their key, as
// the guard does (RFC 9449 §7.1), and refuses them as bearer tokens.
func TestOIDCUserInfoDPoP(t *testing.T) {
	oidc := withOIDC(t, nil)
	e := newEnv(t, func(c *Config) {
		oidc(c)
		c.DPoP = &dpop.Verifier{Replay: dpop.NewReplayCache(1000, 1)}
	})
	key, other := newTestKey(t), newTestKey(t)
	verifier, challenge := pkce()
	params := authParams("rp", "scope", "openid email", "nonce", "n", "code_challenge", challenge, "code_challenge_method", "S256")
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+AuthorizePath+"?"+params.Encode(), nil)
	req.Header.Set("X-Test-User", testUser)
	req.Header.Set("X-Test-Email", "alice@example.com")
	_, q := e.do(req).location(t)
	tr := e.postDPoP("rp", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {verifier}}, key.proof(t, e.ts.URL+TokenPath, ""))
	body := tr.json(t)
	if tr.status != http.StatusOK || body["token_type"] != "DPoP" || body["id_token"] == nil {
		t.Fatalf("token: %d %v", tr.status, body)
	}
	access := body["access_token"].(string)
	call := func(scheme string, proof string) result {
		req := mustGet(t, e.ts.URL+UserInfoPath)
		req.Header.Set("Authorization", scheme+" "+access)
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		return e.do(req)
	}
	sum := sha256.Sum256([]byte(access))
	ath := base64.RawURLEncoding.EncodeToString(sum[:])
	signed := func(k testKey, htm, htu, ath string) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.k}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := josejwt.Signed(s).Claims(map[string]any{"jti": rand.Text(), "htm": htm, "htu": htu, "iat": time.Now().Unix(), "ath": ath}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	u := e.ts.URL + UserInfoPath
	good := signed(key, "GET", u, ath)
	if res := call("DPoP", good); res.status != http.StatusOK || res.json(t)["email"] != "alice@example.com" {
		t.Fatalf("DPoP userinfo: %d %s", res.status, res.body)
	}
	wantChallenge(t, call("Bearer", ""), http.StatusUnauthorized, "invalid_token")
	for name, proof := range map[string]string{
		"replayed":    good,
		"no proof":    "",
		"other key":   signed(other, "GET", u, ath),
		"other URL":   signed(key, "GET", e.ts.URL+"/elsewhere", ath),
		"other verb":  signed(key, "POST", u, ath),
		"wrong ath":   signed(key, "GET", u, "AAAA"),
		"not a proof": "garbage",
	} {
		res := call("DPoP", proof)
		if res.status != http.StatusUnauthorized || !strings.Contains(res.header.Get("WWW-Authenticate"), `DPoP realm="userinfo"`) ||
			!strings.Contains(res.header.Get("WWW-Authenticate"), `error="invalid_dpop_proof"`) {
			t.Errorf("%s: %d %q", name, res.status, res.header.Get("WWW-Authenticate"))
		}
	}
	// A bearer token of the same grant, sent with the DPoP scheme, has no
	// key to prove.
	plain := e.oidcTokens("rp", "openid", "n2")["access_token"].(string)
	access = plain
	sum = sha256.Sum256([]byte(plain))
	wantChallenge(t, call("DPoP", signed(key, "GET", u, base64.RawURLEncoding.EncodeToString(sum[:]))), http.StatusUnauthorized, "invalid_token")
}
