package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

var (
	ecKey, _        = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _        = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, edKey, _ = ed25519.GenerateKey(rand.Reader)
	rsaKey, _       = rsa.GenerateKey(rand.Reader, 2048)
	t0              = time.Unix(1_800_000_000, 0)
)

func pubJWK(t testing.TB, pub any) map[string]any {
	k, err := jwk.Import(pub)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(k)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// sign builds a compact JWS; alg "none" and "HS256" are signed as an attacker would.
func sign(t testing.TB, hdr, claims map[string]any, alg string) string {
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(claims)
	in := b64.EncodeToString(hb) + "." + b64.EncodeToString(cb)
	d := sha256.Sum256([]byte(in))
	var sig []byte
	switch alg {
	case "ES256":
		r, s, _ := ecdsa.Sign(rand.Reader, ecKey, d[:])
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	case "ES384":
		d := crypto.SHA384.New()
		d.Write([]byte(in))
		r, s, _ := ecdsa.Sign(rand.Reader, ec384, d.Sum(nil))
		sig = append(r.FillBytes(make([]byte, 48)), s.FillBytes(make([]byte, 48))...)
	case "EdDSA":
		sig = ed25519.Sign(edKey, []byte(in))
	case "RS256":
		sig, _ = rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, d[:])
	case "PS256":
		sig, _ = rsa.SignPSS(rand.Reader, rsaKey, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "HS256":
		m := hmac.New(sha256.New, []byte("secret"))
		m.Write([]byte(in))
		sig = m.Sum(nil)
	case "none":
	}
	return in + "." + b64.EncodeToString(sig)
}

var target, _ = url.Parse("https://api.example.com/v1/things?x=1")

func baseClaims() map[string]any {
	return map[string]any{"jti": "j1", "htm": "GET", "htu": "https://api.example.com/v1/things", "iat": t0.Unix(), "ath": ATH("tok")}
}

func keyFor(t testing.TB, alg string) map[string]any {
	switch alg {
	case "ES384":
		return pubJWK(t, &ec384.PublicKey)
	case "EdDSA":
		return pubJWK(t, edPub)
	case "RS256", "PS256":
		return pubJWK(t, &rsaKey.PublicKey)
	}
	return pubJWK(t, &ecKey.PublicKey)
}

func verifier() *Verifier {
	return &Verifier{Replay: NewReplayCache(1000, 4), Now: func() time.Time { return t0 }}
}

func TestVerifyAccepts(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			k := keyFor(t, alg)
			p := sign(t, map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": k}, baseClaims(), alg)
			got, err := verifier().Verify(p, Request{Method: "GET", URL: target, AccessToken: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			kk, _ := jwk.ParseKey(mustJSON(k))
			tp, _ := kk.Thumbprint(crypto.SHA256)
			if got.JKT != b64.EncodeToString(tp) || got.JTI != "j1" || !got.IssuedAt.Equal(t0) {
				t.Fatalf("proof %+v", got)
			}
		})
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// RFC 7638 §3.1's example key and thumbprint.
func TestThumbprintRFC7638(t *testing.T) {
	n := "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	k := map[string]any{"kty": "RSA", "n": n, "e": "AQAB"}
	var m jwkMembers
	json.Unmarshal(mustJSON(k), &m)
	key, jkt, err := publicKey(&m, "RS256")
	if err != nil || key == nil {
		t.Fatal(err)
	}
	if jkt != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("jkt %s", jkt)
	}
}

func TestVerifyRefuses(t *testing.T) {
	ec := pubJWK(t, &ecKey.PublicKey)
	withD := pubJWK(t, &ecKey.PublicKey)
	withD["d"] = b64.EncodeToString(ecKey.D.Bytes())
	withX5c := pubJWK(t, &ecKey.PublicKey)
	withX5c["x5c"] = []string{"MIIB"}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	hdr := func(kv ...any) map[string]any {
		h := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": ec}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(h, kv[i].(string))
			} else {
				h[kv[i].(string)] = kv[i+1]
			}
		}
		return h
	}
	cl := func(kv ...any) map[string]any {
		c := baseClaims()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	cases := []struct {
		name, reason string
		proof        string
		req          *Request
	}{
		{"alg none, empty signature", "malformed", sign(t, hdr("alg", "none"), cl(), "none"), nil},
		{"alg none, junk signature", "alg", sign(t, hdr("alg", "none"), cl(), "none") + "AAAA", nil},
		{"HS256 symmetric jwk", "alg", sign(t, hdr("alg", "HS256", "jwk", map[string]any{"kty": "oct", "k": b64.EncodeToString([]byte("secret"))}), cl(), "HS256"), nil},
		{"HS256 allowed by mistake still refused", "alg", sign(t, hdr("alg", "HS256"), cl(), "HS256"), nil},
		{"private member d", "jwk", sign(t, hdr("jwk", withD), cl(), "ES256"), nil},
		{"jwk with x5c", "jwk", sign(t, hdr("jwk", withX5c), cl(), "ES256"), nil},
		{"x5c header", "header", sign(t, hdr("x5c", []string{"MIIB"}), cl(), "ES256"), nil},
		{"jku header", "header", sign(t, hdr("jku", "https://evil.example/jwks"), cl(), "ES256"), nil},
		{"crit header", "header", sign(t, hdr("crit", []string{"x"}), cl(), "ES256"), nil},
		{"no jwk", "jwk", sign(t, hdr("jwk", nil), cl(), "ES256"), nil},
		{"kty mismatch RSA key ES256", "jwk", sign(t, hdr("jwk", pubJWK(t, &rsaKey.PublicKey)), cl(), "ES256"), nil},
		{"curve mismatch P-384 key ES256", "jwk", sign(t, hdr("jwk", pubJWK(t, &ec384.PublicKey)), cl(), "ES256"), nil},
		{"kty mismatch EC key EdDSA", "jwk", sign(t, hdr("alg", "EdDSA"), cl(), "EdDSA"), nil},
		{"short RSA key", "jwk", sign(t, hdr("alg", "RS256", "jwk", map[string]any{"kty": "RSA", "n": b64.EncodeToString(small.N.Bytes()), "e": "AQAB"}), cl(), "RS256"), nil},
		{"EC point off the curve", "jwk", sign(t, hdr("jwk", offCurve(t)), cl(), "ES256"), nil},
		{"RSA even exponent", "jwk", sign(t, hdr("alg", "RS256", "jwk", map[string]any{"kty": "RSA", "n": b64.EncodeToString(rsaKey.N.Bytes()), "e": "AAI"}), cl(), "RS256"), nil},
		{"OKP X25519 key", "jwk", sign(t, hdr("alg", "EdDSA", "jwk", map[string]any{"kty": "OKP", "crv": "X25519", "x": b64.EncodeToString(edPub)}), cl(), "EdDSA"), nil},
		{"wrong typ", "typ", sign(t, hdr("typ", "JWT"), cl(), "ES256"), nil},
		{"no typ", "typ", sign(t, hdr("typ", nil), cl(), "ES256"), nil},
		{"signed by another key", "signature", sign(t, hdr("jwk", pubJWK(t, &ecdsaOther.PublicKey)), cl(), "ES256"), nil},
		{"htm", "htm", sign(t, hdr(), cl("htm", "POST"), "ES256"), nil},
		{"htm case", "htm", sign(t, hdr(), cl("htm", "get"), "ES256"), nil},
		{"htu scheme", "htu", sign(t, hdr(), cl("htu", "http://api.example.com/v1/things"), "ES256"), nil},
		{"htu host", "htu", sign(t, hdr(), cl("htu", "https://evil.example.com/v1/things"), "ES256"), nil},
		{"htu port", "htu", sign(t, hdr(), cl("htu", "https://api.example.com:8443/v1/things"), "ES256"), nil},
		{"htu path", "htu", sign(t, hdr(), cl("htu", "https://api.example.com/v1/other"), "ES256"), nil},
		{"htu path prefix", "htu", sign(t, hdr(), cl("htu", "https://api.example.com/v1/things/"), "ES256"), nil},
		{"htu relative", "htu", sign(t, hdr(), cl("htu", "/v1/things"), "ES256"), nil},
		{"htu missing", "htu", sign(t, hdr(), cl("htu", nil), "ES256"), nil},
		{"stale iat", "iat", sign(t, hdr(), cl("iat", t0.Add(-71*time.Second).Unix()), "ES256"), nil},
		{"future iat", "iat", sign(t, hdr(), cl("iat", t0.Add(11*time.Second).Unix()), "ES256"), nil},
		{"no iat", "iat", sign(t, hdr(), cl("iat", nil), "ES256"), nil},
		{"string iat", "malformed", sign(t, hdr(), cl("iat", "1800000000"), "ES256"), nil},
		{"no jti", "jti", sign(t, hdr(), cl("jti", nil), "ES256"), nil},
		{"wrong ath", "ath", sign(t, hdr(), cl("ath", ATH("other")), "ES256"), nil},
		{"no ath", "ath", sign(t, hdr(), cl("ath", nil), "ES256"), nil},
		{"oversize", "size", sign(t, hdr(), cl("pad", strings.Repeat("a", 9000)), "ES256"), nil},
		{"two dots", "malformed", "a.b", nil},
		{"four parts", "malformed", "a.b.c.d", nil},
		{"garbage header", "malformed", "!!.e30.e30", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := Request{Method: "GET", URL: target, AccessToken: "tok"}
			if c.req != nil {
				req = *c.req
			}
			_, err := verifier().Verify(c.proof, req)
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidProof || e.Reason != c.reason {
				t.Fatalf("got %v (%+v), want invalid_dpop_proof/%s", err, e, c.reason)
			}
		})
	}
}

var ecdsaOther, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

func TestHTUNormalised(t *testing.T) {
	for _, htu := range []string{
		"https://api.example.com/v1/things",
		"HTTPS://API.Example.COM/v1/things",
		"https://api.example.com:443/v1/things",
		"https://api.example.com/v1/things?other=2",
		"https://api.example.com/v1/things#frag",
	} {
		if !SameHTU(htu, target) {
			t.Errorf("%s refused", htu)
		}
	}
	u, _ := url.Parse("http://h.example:80")
	if !SameHTU("http://H.example/", u) {
		t.Error("empty path and default port not normalised")
	}
	if SameHTU("https://api.example.com/V1/things", target) {
		t.Error("path compared case-insensitively")
	}
}

func TestReplay(t *testing.T) {
	v := verifier()
	p := sign(t, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": pubJWK(t, &ecKey.PublicKey)}, baseClaims(), "ES256")
	req := Request{Method: "GET", URL: target, AccessToken: "tok"}
	if _, err := v.Verify(p, req); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(p, req)
	var e *Error
	if !errors.As(err, &e) || e.Reason != "replay" {
		t.Fatalf("replay: %v", err)
	}
	// The same jti from another key is another proof.
	p2 := sign(t, map[string]any{"typ": "dpop+jwt", "alg": "EdDSA", "jwk": pubJWK(t, edPub)}, baseClaims(), "EdDSA")
	if _, err := v.Verify(p2, req); err != nil {
		t.Fatal(err)
	}
	// A refused proof does not burn its jti.
	bad := baseClaims()
	bad["jti"], bad["htm"] = "j9", "POST"
	v.Verify(sign(t, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": pubJWK(t, &ecKey.PublicKey)}, bad, "ES256"), req)
	bad["htm"] = "GET"
	if _, err := v.Verify(sign(t, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": pubJWK(t, &ecKey.PublicKey)}, bad, "ES256"), req); err != nil {
		t.Fatal(err)
	}
}

func TestReplayCacheFullRefusesThenRecovers(t *testing.T) {
	c := NewReplayCache(2, 1)
	exp := t0.Add(time.Minute)
	if c.Add("k", "1", exp, t0) != nil || c.Add("k", "2", exp, t0) != nil {
		t.Fatal("add")
	}
	err := c.Add("k", "3", exp, t0)
	var e *Error
	if !errors.As(err, &e) || e.Reason != "replay_cache_full" {
		t.Fatalf("full: %v", err)
	}
	// Live entries were not forgotten.
	if err := c.Add("k", "1", exp, t0.Add(time.Second)); err == nil || !strings.Contains(err.Error(), "used before") {
		t.Fatalf("forgot a live jti: %v", err)
	}
	// Once they expire, room is made.
	if err := c.Add("k", "3", exp.Add(time.Minute), exp); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 {
		t.Fatalf("len %d", c.Len())
	}
}

func TestNonces(t *testing.T) {
	key := make([]byte, 32)
	a, b := NewNonces(key, time.Minute), NewNonces(key, time.Minute)
	n := a.Issue(t0)
	if !b.Valid(n, t0) || !b.Valid(n, t0.Add(time.Minute)) {
		t.Fatal("a gateway refused another's nonce in the current or next window")
	}
	if b.Valid(n, t0.Add(3*time.Minute)) {
		t.Fatal("expired nonce accepted")
	}
	if NewNonces([]byte("another key, another fleet......"), time.Minute).Valid(n, t0) {
		t.Fatal("nonce under another key accepted")
	}
	if b.Valid(a.Issue(t0.Add(2*time.Minute)), t0) {
		t.Fatal("future nonce accepted")
	}
	if b.Valid("", t0) || b.Valid(n[:len(n)-1]+"A", t0) {
		t.Fatal("bad nonce accepted")
	}

	v := verifier()
	v.Nonces = a
	hdr := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": pubJWK(t, &ecKey.PublicKey)}
	req := Request{Method: "GET", URL: target, AccessToken: "tok"}
	for name, nonce := range map[string]any{"missing": nil, "wrong": "AAAA", "expired": a.Issue(t0.Add(-2 * time.Minute))} {
		c := baseClaims()
		c["jti"] = name
		if nonce != nil {
			c["nonce"] = nonce
		}
		_, err := v.Verify(sign(t, hdr, c, "ES256"), req)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeUseNonce {
			t.Fatalf("%s nonce: %v", name, err)
		}
	}
	c := baseClaims()
	c["nonce"] = n
	if _, err := v.Verify(sign(t, hdr, c, "ES256"), req); err != nil {
		t.Fatal(err)
	}
}

func TestHeader(t *testing.T) {
	h := http.Header{}
	if p, err := Header(h); p != "" || err != nil {
		t.Fatal("none")
	}
	h.Add("DPoP", "a.b.c")
	if p, err := Header(h); p != "a.b.c" || err != nil {
		t.Fatal("one")
	}
	h.Add("Dpop", "d.e.f")
	if _, err := Header(h); err == nil {
		t.Fatal("two DPoP headers accepted")
	}
	if _, err := Header(http.Header{"Dpop": {"a.b.c, d.e.f"}}); err == nil {
		t.Fatal("two proofs in one header accepted")
	}
}

func offCurve(t testing.TB) map[string]any {
	k := pubJWK(t, &ecKey.PublicKey)
	y := mustB64(k["y"].(string))
	y[31] ^= 1
	k["y"] = b64.EncodeToString(y)
	return k
}
