package validator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokengate/caddy-oauth2/dpop"
	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// The sender-constraint step, over real HTTP: our opaque tokens bound by
// the store, a source's grant bound by cnf.jkt, dpop required.
func TestDPoPSenderConstraint(t *testing.T) {
	h := token.NewHasher([]byte("test secret"))
	f := &fakeTokens{tokens: map[string]*stores.Token{}}
	dv := &dpop.Verifier{Replay: dpop.NewReplayCache(1000, 1)}
	newV := func(required bool) *Validator {
		v, err := New(Config{Tokens: f, Hasher: h, Realm: "api", DPoP: dv, RequireDPoP: required})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tp, _ := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	jkt := base64.RawURLEncoding.EncodeToString(tp)
	issue := func(jkt string) string {
		raw, _ := token.New(token.AccessPrefix)
		f.tokens[h.Key(raw)] = &stores.Token{Kind: stores.AccessToken, ClientID: "c", Scope: "read", ExpiresAt: time.Now().Add(time.Hour), JKT: jkt}
		return raw
	}
	proof := func(k *ecdsa.PrivateKey, method, htu, at string) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(at))
		p, err := josejwt.Signed(s).Claims(map[string]any{"jti": rand.Text(), "htm": method, "htu": htu, "iat": time.Now().Unix(),
			"ath": base64.RawURLEncoding.EncodeToString(sum[:])}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var lastV *Validator
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, d := lastV.CheckGrant(r); d != nil {
			w.Header().Set("WWW-Authenticate", d.Challenge)
			if d.DPoPChallenge != "" {
				w.Header().Add("WWW-Authenticate", d.DPoPChallenge)
			}
			w.WriteHeader(d.Status)
			return
		}
		w.WriteHeader(200)
	}))
	defer srv.Close()
	u := srv.URL + "/r"
	call := func(v *Validator, scheme, at, p string) (int, string) {
		lastV = v
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Authorization", scheme+" "+at)
		if p != "" {
			req.Header.Set("DPoP", p)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, strings.Join(resp.Header.Values("WWW-Authenticate"), " | ")
	}
	v := newV(false)
	bound, plain := issue(jkt), issue("")
	replayed := proof(key, "GET", u, bound)
	for _, c := range []struct {
		name, scheme, at, proof string
		status                  int
		errCode                 string
	}{
		{"bound with its proof", "DPoP", bound, replayed, 200, ""},
		{"replayed", "DPoP", bound, replayed, 401, "invalid_dpop_proof"},
		{"bound as Bearer", "Bearer", bound, "", 401, "invalid_token"},
		{"another key", "DPoP", bound, proof(other, "GET", u, bound), 401, "invalid_dpop_proof"},
		{"another method", "DPoP", bound, proof(key, "POST", u, bound), 401, "invalid_dpop_proof"},
		{"another URL", "DPoP", bound, proof(key, "GET", srv.URL+"/x", bound), 401, "invalid_dpop_proof"},
		{"ath of another token", "DPoP", bound, proof(key, "GET", u, plain), 401, "invalid_dpop_proof"},
		{"no proof", "DPoP", bound, "", 401, "invalid_dpop_proof"},
		{"unbound as Bearer", "Bearer", plain, "", 200, ""},
		// RFC 9449 §7.1: the proof must be of the key the token is bound to.
		{"unbound with the DPoP scheme and a proof", "DPoP", plain, proof(other, "GET", u, plain), 401, "invalid_token"},
	} {
		status, ch := call(v, c.scheme, c.at, c.proof)
		if status != c.status || c.errCode != "" && !strings.Contains(ch, `error="`+c.errCode+`"`) {
			t.Errorf("%s: %d %q, want %d %s", c.name, status, ch, c.status, c.errCode)
		}
		if status != 200 && !strings.Contains(ch, `DPoP realm="api", algs="ES256 ES384 EdDSA RS256 PS256"`) {
			t.Errorf("%s: no DPoP challenge in %q", c.name, ch)
		}
	}
	strict := newV(true)
	if status, ch := call(strict, "Bearer", plain, ""); status != 401 || !strings.Contains(ch, `error="invalid_token"`) {
		t.Errorf("dpop required, unbound: %d %q", status, ch)
	}
	if status, _ := call(strict, "DPoP", bound, proof(key, "GET", u, bound)); status != 200 {
		t.Errorf("dpop required, bound: %d", status)
	}
	// Without a verifier, a bound token never passes.
	nodpop, _ := New(Config{Tokens: f, Hasher: h})
	if status, _ := call(nodpop, "Bearer", bound, ""); status != 401 {
		t.Errorf("no DPoP, bound as Bearer: %d", status)
	}
	if status, _ := call(nodpop, "DPoP", bound, proof(key, "GET", u, bound)); status != 401 {
		t.Errorf("no DPoP, DPoP scheme: %d", status)
	}
}
