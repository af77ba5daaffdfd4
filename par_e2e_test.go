package oauth2

// Pushed authorization requests (RFC 9126), private_key_jwt (RFC 7523) and
// profile fapi2 through real Caddy processes: two gateways over one SQLite
// file, as a fleet shares a store, so a request_uri or an assertion used at
// one is refused at the other. Ports 19500-19513, admin 19545-19546.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// parGateway is one gateway of the PAR tests.
type parGateway struct {
	srv, api, admin int
	proc            *caddyProcess
}

func (g *parGateway) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", g.srv, path)
}

func parConfig(g *parGateway, store, jwksFile, extra string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	default_bind 127.0.0.1
	http_port %[2]d
	https_port %[3]d
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "par-e2e-test-secret-of-at-least-32-bytes"
		issuer http://127.0.0.1:19500
		access_token_store %[4]s
		authorization_code_store %[4]s
		%[5]s
		client kj {
			jwks %[6]s
			redirect_uri http://127.0.0.1:9999/cb
			scopes read
			skip_consent
		}
		client svc {
			secret_hash %[7]s
			redirect_uri http://127.0.0.1:9999/svc
			scopes read
			skip_consent
		}
	}
}
http://127.0.0.1:%[2]d {
	handle /oauth2/authorize {
		basic_auth {
			alice %[8]s
		}
		oauth2_server
	}
	oauth2_server
}
http://127.0.0.1:%[9]d {
	oauth2_guard read
	respond "ok {http.auth.user.id}"
}
`, g.admin, g.srv, g.srv+2, store, extra, jwksFile, secretHash, aliceHash, g.api)
}

// e2eKey is a client's ES256 key and its JWKS file.
type e2eKey struct {
	priv *ecdsa.PrivateKey
	file string
	kid  string // default "e2e"
}

func newE2EKey(t *testing.T, dir string) *e2eKey {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "e2e", Algorithm: "ES256", Use: "sig"}}})
	file := filepath.Join(dir, "kj.jwks.json")
	if err := os.WriteFile(file, set, 0o600); err != nil {
		t.Fatal(err)
	}
	return &e2eKey{priv: priv, file: file}
}

var e2eJTI int

// assertion is a private_key_jwt assertion of client id for aud; over
// replaces claims.
func (k *e2eKey) assertion(t *testing.T, id, aud string, over map[string]any) string {
	e2eJTI++
	now := time.Now()
	claims := map[string]any{"iss": id, "sub": id, "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": fmt.Sprintf("e2e-%d-%d", now.UnixNano(), e2eJTI)}
	for c, v := range over {
		claims[c] = v
	}
	kid := k.kid
	if kid == "" {
		kid = "e2e"
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func assertionForm(a string, kv ...string) url.Values {
	f := url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return f
}

var parHC = &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func parPost(t *testing.T, u string, form url.Values, basic ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := parHC.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// parAuthorize follows a request_uri as alice and returns the status and
// the redirect's query.
func parAuthorize(t *testing.T, g *parGateway, client, requestURI string) (int, url.Values) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.url("/oauth2/authorize?"+url.Values{"client_id": {client}, "request_uri": {requestURI}}.Encode()), nil)
	req.SetBasicAuth("alice", "alice-password")
	resp, err := parHC.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Location") == "" {
		return resp.StatusCode, nil
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return resp.StatusCode, loc.Query()
}

func startParGateways(t *testing.T, store, extra string, key *e2eKey, n int) []*parGateway {
	t.Helper()
	var gws []*parGateway
	dir := t.TempDir()
	for i := range n {
		g := &parGateway{srv: 19500 + 10*i, api: 19501 + 10*i, admin: 19545 + i}
		path := filepath.Join(dir, fmt.Sprintf("Caddyfile.%d", i))
		if err := os.WriteFile(path, []byte(parConfig(g, store, key.file, extra)), 0o600); err != nil {
			t.Fatal(err)
		}
		g.proc = startCaddyProcess(t, path, g.srv, g.api, g.admin)
		for deadline := time.Now().Add(60 * time.Second); ; {
			resp, err := parHC.Get(fmt.Sprintf("http://127.0.0.1:%d/", g.api))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 401 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway %d did not start:\n%s", i, g.proc.log)
			}
			time.Sleep(100 * time.Millisecond)
		}
		gws = append(gws, g)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, g := range gws {
				t.Logf("log of gateway %d:\n%s", i, tail(g.proc.log.String(), 40))
			}
		}
	})
	return gws
}

func TestPARAndPrivateKeyJWTFleet(t *testing.T) {
	dir := t.TempDir()
	key := newE2EKey(t, dir)
	store := fmt.Sprintf("sql {\n\t\t\tdialect sqlite\n\t\t\tdsn %q\n\t\t\tcreate_schema\n\t\t}", filepath.Join(dir, "oauth.db"))
	gws := startParGateways(t, store, "require_pushed_authorization_requests", key, 2)
	a, b := gws[0], gws[1]
	const iss = "http://127.0.0.1:19500"

	// Metadata announces PAR and private_key_jwt.
	resp, err := parHC.Get(a.url("/.well-known/oauth-authorization-server"))
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if md["pushed_authorization_request_endpoint"] != iss+"/oauth2/par" || md["require_pushed_authorization_requests"] != true ||
		!strings.Contains(fmt.Sprint(md["token_endpoint_auth_methods_supported"]), "private_key_jwt") ||
		!strings.Contains(fmt.Sprint(md["token_endpoint_auth_signing_alg_values_supported"]), "ES256") {
		t.Fatalf("metadata %v", md)
	}

	verifier := oauth2.GenerateVerifier()
	push := func(g *parGateway) string {
		status, body := parPost(t, g.url("/oauth2/par"), assertionForm(key.assertion(t, "kj", iss, nil),
			"response_type", "code", "scope", "read", "state", "s1", "redirect_uri", "http://127.0.0.1:9999/cb",
			"code_challenge", oauth2.S256ChallengeFromVerifier(verifier), "code_challenge_method", "S256"))
		if status != http.StatusCreated {
			t.Fatalf("PAR: %d %v", status, body)
		}
		return body["request_uri"].(string)
	}

	t.Run("pushed at A, redeemed at B, refused the second time at either", func(t *testing.T) {
		uri := push(a)
		status, q := parAuthorize(t, b, "kj", uri)
		if status != http.StatusFound || q.Get("code") == "" || q.Get("iss") != iss || q.Get("state") != "s1" {
			t.Fatalf("authorize at B: %d %v", status, q)
		}
		for _, g := range []*parGateway{a, b} {
			if status, _ := parAuthorize(t, g, "kj", uri); status != http.StatusBadRequest {
				t.Fatalf("request_uri used twice: %d", status)
			}
		}
		status, tok := parPost(t, a.url("/oauth2/token"), assertionForm(key.assertion(t, "kj", iss+"/oauth2/token", nil),
			"grant_type", "authorization_code", "code", q.Get("code"), "code_verifier", verifier, "redirect_uri", "http://127.0.0.1:9999/cb"))
		if status != http.StatusOK || tok["access_token"] == nil {
			t.Fatalf("token: %d %v", status, tok)
		}
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", b.api), nil)
		req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
		resp, err := parHC.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("guard: %d", resp.StatusCode)
		}
	})

	t.Run("another client's request_uri is refused", func(t *testing.T) {
		uri := push(a)
		if status, q := parAuthorize(t, a, "svc", uri); status != http.StatusBadRequest || q != nil {
			t.Fatalf("svc with kj's request_uri: %d %v", status, q)
		}
	})

	t.Run("an unpushed request is refused with require_pushed_authorization_requests", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, a.url("/oauth2/authorize?"+url.Values{"client_id": {"svc"}, "response_type": {"code"}}.Encode()), nil)
		req.SetBasicAuth("alice", "alice-password")
		resp, err := parHC.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc.Query().Get("error") != "invalid_request" {
			t.Fatalf("unpushed: %d %v", resp.StatusCode, loc)
		}
		// A secret client pushes with its secret.
		status, body := parPost(t, a.url("/oauth2/par"), url.Values{"response_type": {"code"}}, "svc", "s3cret")
		if status != http.StatusCreated {
			t.Fatalf("svc PAR: %d %v", status, body)
		}
	})

	t.Run("a replayed assertion is refused at the same and at the other gateway", func(t *testing.T) {
		as := key.assertion(t, "kj", iss, nil)
		cc := func(g *parGateway) (int, map[string]any) {
			return parPost(t, g.url("/oauth2/token"), assertionForm(as, "grant_type", "client_credentials"))
		}
		if status, body := cc(a); status != http.StatusOK {
			t.Fatalf("first: %d %v", status, body)
		}
		for _, g := range []*parGateway{a, b} {
			if status, body := cc(g); status != http.StatusUnauthorized || body["error"] != "invalid_client" {
				t.Fatalf("replay at %d: %d %v", g.srv, status, body)
			}
		}
	})

	t.Run("bad assertions are invalid_client", func(t *testing.T) {
		hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(strings.Repeat("k", 32))}, nil)
		claims := fmt.Sprintf(`{"iss":"kj","sub":"kj","aud":%q,"exp":%d,"jti":"x%d"}`, iss, time.Now().Add(time.Minute).Unix(), time.Now().UnixNano())
		hsJWS, _ := hs.Sign([]byte(claims))
		hsRaw, _ := hsJWS.CompactSerialize()
		b64 := base64.RawURLEncoding.EncodeToString
		for name, as := range map[string]string{
			"wrong aud": key.assertion(t, "kj", "http://127.0.0.1:19510", nil),
			"wrong iss": key.assertion(t, "kj", iss, map[string]any{"iss": "svc"}),
			"alg none":  b64([]byte(`{"alg":"none"}`)) + "." + b64([]byte(claims)) + ".",
			"HS256":     hsRaw,
			"exp far":   key.assertion(t, "kj", iss, map[string]any{"exp": time.Now().Add(time.Hour).Unix()}),
		} {
			status, body := parPost(t, a.url("/oauth2/token"), assertionForm(as, "grant_type", "client_credentials"))
			if status != http.StatusUnauthorized || body["error"] != "invalid_client" {
				t.Errorf("%s: %d %v", name, status, body)
			}
		}
		// Introspection and revocation take assertions too.
		for _, p := range []string{"/oauth2/introspect", "/oauth2/revoke"} {
			status, body := parPost(t, a.url(p), assertionForm(key.assertion(t, "kj", iss, nil), "token", "cat_nothing"))
			if status != http.StatusOK {
				t.Errorf("%s: %d %v", p, status, body)
			}
		}
	})

	t.Run("metrics count PAR requests and replays", func(t *testing.T) {
		resp, err := parHC.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", a.admin))
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		buf := make([]byte, 1<<16)
		for {
			n, err := resp.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		m := sb.String()
		if !strings.Contains(m, `caddy_oauth2_par_requests_total{outcome="created"}`) ||
			!strings.Contains(m, `caddy_oauth2_client_assertion_replays_total{client_id="kj"} 1`) {
			t.Errorf("metrics lack PAR or replay counters:\n%s", counterLines(m))
		}
	})
}

func counterLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "par_requests") || strings.Contains(l, "assertion_replays") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestProfileFAPI2RefusesSecretClient(t *testing.T) {
	dir := t.TempDir()
	key := newE2EKey(t, dir)
	g := &parGateway{srv: 19500, api: 19501, admin: 19545}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(parConfig(g, "cache", key.file, "profile fapi2")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs, code := caddyCLI(t, "", "validate", "--config", path, "--adapter", "caddyfile")
	if code == 0 || !strings.Contains(errs, `client \"svc\"`) && !strings.Contains(errs, `client "svc"`) || !strings.Contains(errs, "private_key_jwt") {
		t.Fatalf("validate with a secret client under fapi2: exit %d\n%s", code, errs)
	}
}
