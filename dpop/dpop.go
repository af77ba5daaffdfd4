// Package dpop verifies DPoP proofs (RFC 9449) for the token endpoint and the
// guard alike: the proof JWT, the RFC 7638 key thumbprint the token is bound
// to, a bounded jti replay cache and stateless server nonces. It knows
// nothing of Caddy or of the stores.
package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Error codes a caller answers with (RFC 9449 §7.1, §8, §12.2).
const (
	CodeInvalidProof = "invalid_dpop_proof"
	CodeUseNonce     = "use_dpop_nonce"
)

// Error is a refused proof. Code is the OAuth error to answer; Reason is a
// short stable label for metrics and logs; Description is safe to send.
type Error struct {
	Code        string
	Reason      string
	Description string
}

func (e *Error) Error() string { return e.Description }

// ChallengeParams are the error parameters of a WWW-Authenticate DPoP
// challenge for e (RFC 9449 §7.1), to follow its realm and algs; the
// description loses what a quoted-string cannot hold (RFC 9110 §5.6.4).
func (e *Error) ChallengeParams() string {
	desc := strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, e.Description)
	return `, error="` + e.Code + `", error_description="` + desc + `"`
}

func invalid(reason, format string, a ...any) *Error {
	return &Error{Code: CodeInvalidProof, Reason: reason, Description: fmt.Sprintf(format, a...)}
}

// DefaultAlgs are the signing algorithms accepted when Verifier.Algs is empty:
// asymmetric only (RFC 9449 §4.2), listed in dpop_signing_alg_values_supported.
var DefaultAlgs = []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"}

// Defaults of Verifier.
const (
	DefaultLifetime     = 60 * time.Second
	DefaultLeeway       = 10 * time.Second
	DefaultMaxProofSize = 8 << 10
	minRSABits          = 2048
)

// Verifier checks proofs. The zero value needs only Replay to be usable
// safely; a nil Replay skips the jti check (tests only).
type Verifier struct {
	// Algs lists the accepted algorithms. Default: DefaultAlgs.
	Algs []string
	// Lifetime is how old a proof's iat may be. Default: 60s.
	Lifetime time.Duration
	// Leeway tolerates clock skew on both sides of iat. Default: 10s.
	Leeway time.Duration
	// MaxProofSize bounds the proof's length in bytes. Default: 8 KiB.
	MaxProofSize int
	// Replay remembers jti values over Lifetime+Leeway.
	Replay *ReplayCache
	// Nonces, when set, makes a valid current nonce mandatory (§8).
	Nonces *Nonces
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Observe, when set, is told of every proof checked: "" when it
	// passed, else the refusal's Reason. It must be cheap and safe for
	// concurrent use (a metrics counter). Default: nil.
	Observe func(reason string)
}

// CurrentNonce is the nonce of now on the verifier's clock, for a
// DPoP-Nonce header; "" without Nonces.
func (v *Verifier) CurrentNonce() string {
	if v.Nonces == nil {
		return ""
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	return v.Nonces.Issue(now())
}

// Refused tells Observe of a refusal the caller made before Verify (no
// proof where one is required, two DPoP headers).
func (v *Verifier) Refused(reason string) {
	if v.Observe != nil {
		v.Observe(reason)
	}
}

// Request is what the proof must match.
type Request struct {
	// Method is the HTTP method of the request (htm).
	Method string
	// URL is the URL the client used (htu), scheme and host included.
	URL *url.URL
	// AccessToken, when set, must hash to the proof's ath (§4.3, at the guard).
	AccessToken string
	// JKT, when set, is the thumbprint the access token is bound to: the
	// proof's key must be that key (§7.1).
	JKT string
}

// Proof is a verified proof.
type Proof struct {
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof key, base64url:
	// the value of cnf.jkt (§6.1).
	JKT      string
	JTI      string
	Alg      string
	IssuedAt time.Time
	Key      crypto.PublicKey
}

type header struct {
	Typ  string          `json:"typ"`
	Alg  string          `json:"alg"`
	JWK  *jwkMembers     `json:"jwk"`
	Crit json.RawMessage `json:"crit"`
	X5c  json.RawMessage `json:"x5c"`
	X5u  json.RawMessage `json:"x5u"`
	Jku  json.RawMessage `json:"jku"`
}

type claims struct {
	JTI   string   `json:"jti"`
	HTM   string   `json:"htm"`
	HTU   string   `json:"htu"`
	IAT   *float64 `json:"iat"`
	ATH   string   `json:"ath"`
	Nonce *string  `json:"nonce"`
}

// jwkMembers is the jwk header, decoded once. The json.RawMessage fields
// only record presence: members of a private or symmetric key (RFC 7518
// §6) or a certificate, all refused.
type jwkMembers struct {
	Kty, Crv, X, Y, N, E        string
	D, P, Q, DP, DQ, QI, Oth, K json.RawMessage
	X5c, X5u, X5t               json.RawMessage
	X5tS256                     json.RawMessage `json:"x5t#S256"`
}

var b64 = base64.RawURLEncoding

// Verify checks one proof against the request (RFC 9449 §4.3) and, when it
// passes every other check, records its jti. The caller takes the proof from
// the single DPoP header (see Header).
func (v *Verifier) Verify(proof string, req Request) (*Proof, error) {
	p, err := v.verify(proof, req)
	if v.Observe != nil {
		reason := ""
		if e, ok := err.(*Error); ok {
			reason = e.Reason
		}
		v.Observe(reason)
	}
	return p, err
}

func (v *Verifier) verify(proof string, req Request) (*Proof, error) {
	max := v.MaxProofSize
	if max <= 0 {
		max = DefaultMaxProofSize
	}
	if len(proof) > max {
		return nil, invalid("size", "DPoP proof is too large")
	}
	h1 := strings.IndexByte(proof, '.')
	h2 := strings.LastIndexByte(proof, '.')
	if h1 <= 0 || h2 == h1 || h2 == len(proof)-1 || strings.IndexByte(proof[h1+1:h2], '.') >= 0 {
		return nil, invalid("malformed", "DPoP proof is not a compact JWS")
	}
	hb, err := b64.DecodeString(proof[:h1])
	if err != nil {
		return nil, invalid("malformed", "DPoP proof header is not base64url")
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, invalid("malformed", "DPoP proof header is not JSON")
	}
	// §4.2: typ dpop+jwt, an asymmetric alg, the public key in jwk.
	if h.Typ != "dpop+jwt" {
		return nil, invalid("typ", "DPoP proof typ must be dpop+jwt")
	}
	if !v.algAllowed(h.Alg) {
		return nil, invalid("alg", "DPoP proof alg is not supported")
	}
	if h.Crit != nil || h.X5c != nil || h.X5u != nil || h.Jku != nil {
		return nil, invalid("header", "DPoP proof header carries unsupported members")
	}
	key, jkt, err := publicKey(h.JWK, h.Alg)
	if err != nil {
		return nil, err
	}
	sig, err := b64.DecodeString(proof[h2+1:])
	if err != nil {
		return nil, invalid("malformed", "DPoP proof signature is not base64url")
	}
	if !verifySignature(h.Alg, key, []byte(proof[:h2]), sig) {
		return nil, invalid("signature", "DPoP proof signature is invalid")
	}
	pb, err := b64.DecodeString(proof[h1+1 : h2])
	if err != nil {
		return nil, invalid("malformed", "DPoP proof payload is not base64url")
	}
	var c claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, invalid("malformed", "DPoP proof payload is not a JSON object")
	}
	if c.JTI == "" {
		return nil, invalid("jti", "DPoP proof has no jti")
	}
	if c.HTM != req.Method {
		return nil, invalid("htm", "DPoP proof htm does not match the request method")
	}
	if !SameHTU(c.HTU, req.URL) {
		return nil, invalid("htu", "DPoP proof htu does not match the request URL")
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now()
	life, leeway := v.Lifetime, v.Leeway
	if life <= 0 {
		life = DefaultLifetime
	}
	if leeway <= 0 {
		leeway = DefaultLeeway
	}
	if c.IAT == nil || math.IsNaN(*c.IAT) || math.IsInf(*c.IAT, 0) || *c.IAT > 1<<40 || *c.IAT < 0 {
		return nil, invalid("iat", "DPoP proof has no valid iat")
	}
	iat := time.Unix(int64(*c.IAT), 0)
	if iat.After(t.Add(leeway)) {
		return nil, invalid("iat", "DPoP proof iat is in the future")
	}
	if t.Sub(iat) > life+leeway {
		return nil, invalid("iat", "DPoP proof is too old")
	}
	if req.AccessToken != "" {
		want := ATH(req.AccessToken)
		if subtle.ConstantTimeCompare([]byte(c.ATH), []byte(want)) != 1 {
			return nil, invalid("ath", "DPoP proof ath does not match the access token")
		}
	}
	if req.JKT != "" && subtle.ConstantTimeCompare([]byte(jkt), []byte(req.JKT)) != 1 {
		return nil, invalid("jkt", "DPoP proof key is not the key the access token is bound to")
	}
	if v.Nonces != nil {
		if c.Nonce == nil || !v.Nonces.Valid(*c.Nonce, t) {
			return nil, &Error{Code: CodeUseNonce, Reason: "nonce", Description: "Authorization server requires nonce in DPoP proof"}
		}
	}
	if v.Replay != nil {
		if err := v.Replay.Add(jkt, c.JTI, iat.Add(life+leeway), t); err != nil {
			return nil, err
		}
	}
	return &Proof{JKT: jkt, JTI: c.JTI, Alg: h.Alg, IssuedAt: iat, Key: key}, nil
}

// Algorithms lists the accepted algorithms, for
// dpop_signing_alg_values_supported and the algs of a DPoP challenge.
func (v *Verifier) Algorithms() []string {
	var out []string
	for _, a := range v.Algs {
		if algKty(a) != "" {
			out = append(out, a)
		}
	}
	if len(v.Algs) == 0 {
		out = append(out, DefaultAlgs...)
	}
	return out
}

// SupportedAlg reports whether alg is an asymmetric algorithm this package
// can verify, for checking a configuration.
func SupportedAlg(alg string) bool { return algKty(alg) != "" }

func (v *Verifier) algAllowed(alg string) bool {
	algs := v.Algs
	if len(algs) == 0 {
		algs = DefaultAlgs
	}
	for _, a := range algs {
		if a == alg && algKty(a) != "" {
			return true
		}
	}
	return false
}

// algKty is the key type an algorithm needs; "" for anything not asymmetric.
func algKty(alg string) string {
	switch alg {
	case "ES256", "ES384", "ES512":
		return "EC"
	case "EdDSA":
		return "OKP"
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return "RSA"
	}
	return ""
}

// publicKey parses the jwk header: public only, of the algorithm's type,
// and returns its thumbprint.
func publicKey(m *jwkMembers, alg string) (crypto.PublicKey, string, error) {
	if m == nil {
		return nil, "", invalid("jwk", "DPoP proof has no jwk header")
	}
	if m.D != nil || m.P != nil || m.Q != nil || m.DP != nil || m.DQ != nil || m.QI != nil || m.Oth != nil || m.K != nil {
		return nil, "", invalid("jwk", "DPoP proof jwk must not contain private or symmetric key members")
	}
	if m.X5c != nil || m.X5u != nil || m.X5t != nil || m.X5tS256 != nil {
		return nil, "", invalid("jwk", "DPoP proof jwk must be a bare public key")
	}
	kty := m.Kty
	if kty != algKty(alg) {
		return nil, "", invalid("jwk", "DPoP proof jwk kty does not match alg")
	}
	bytesOf := func(v string) []byte {
		b, err := b64.DecodeString(v)
		if err != nil || v == "" {
			return nil
		}
		return b
	}
	bad := invalid("jwk", "DPoP proof jwk is not a valid public key for alg")
	var pub crypto.PublicKey
	var tp string // RFC 7638 §3.2: the required members, sorted, no spaces.
	switch kty {
	case "EC":
		crv := m.Crv
		curve, size := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg], 0
		if want := curve.Params().Name; crv != want {
			return nil, "", invalid("jwk", "DPoP proof jwk curve does not match alg")
		}
		size = (curve.Params().BitSize + 7) / 8
		x, y := bytesOf(m.X), bytesOf(m.Y)
		if len(x) != size || len(y) != size {
			return nil, "", bad
		}
		k, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil { // not on the curve
			return nil, "", bad
		}
		pub = k
		tp = `{"crv":"` + crv + `","kty":"EC","x":"` + b64.EncodeToString(x) + `","y":"` + b64.EncodeToString(y) + `"}`
	case "OKP":
		crv := m.Crv
		x := bytesOf(m.X)
		if crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			return nil, "", bad
		}
		pub = ed25519.PublicKey(x)
		tp = `{"crv":"Ed25519","kty":"OKP","x":"` + b64.EncodeToString(x) + `"}`
	case "RSA":
		n, e := bytesOf(m.N), bytesOf(m.E)
		if len(n) == 0 || n[0] == 0 || len(e) == 0 || len(e) > 4 || e[0] == 0 {
			return nil, "", bad
		}
		N := new(big.Int).SetBytes(n)
		E := int(new(big.Int).SetBytes(e).Int64())
		if N.BitLen() < minRSABits || N.BitLen() > 8192 || E < 3 || E%2 == 0 {
			return nil, "", invalid("jwk", "DPoP proof RSA key must be 2048 to 8192 bits with an odd exponent")
		}
		pub = &rsa.PublicKey{N: N, E: E}
		tp = `{"e":"` + b64.EncodeToString(e) + `","kty":"RSA","n":"` + b64.EncodeToString(n) + `"}`
	}
	d := sha256.Sum256([]byte(tp))
	return pub, b64.EncodeToString(d[:]), nil
}

func verifySignature(alg string, key crypto.PublicKey, input, sig []byte) bool {
	var hf crypto.Hash
	switch alg {
	case "ES256", "RS256", "PS256":
		hf = crypto.SHA256
	case "ES384", "RS384", "PS384":
		hf = crypto.SHA384
	case "ES512", "RS512", "PS512":
		hf = crypto.SHA512
	case "EdDSA":
		k, ok := key.(ed25519.PublicKey)
		return ok && ed25519.Verify(k, input, sig)
	default:
		return false
	}
	var digest []byte
	switch hf {
	case crypto.SHA256:
		d := sha256.Sum256(input)
		digest = d[:]
	case crypto.SHA384:
		d := sha512.Sum384(input)
		digest = d[:]
	default:
		d := sha512.Sum512(input)
		digest = d[:]
	}
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		// RFC 7518 §3.4: R || S, each the curve's size.
		n := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		return ecdsa.Verify(k, digest, r, s)
	case *rsa.PublicKey:
		if alg[0] == 'P' {
			return rsa.VerifyPSS(k, hf, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(k, hf, digest, sig) == nil
	}
	return false
}

// ATH is the ath claim for an access token: base64url(SHA-256(token)) (§4.2).
func ATH(token string) string {
	d := sha256.Sum256([]byte(token))
	return b64.EncodeToString(d[:])
}

// SameHTU compares a proof's htu with the request URL per RFC 9449 §4.3:
// scheme and host case-insensitively, default ports elided, query and
// fragment ignored, the path exactly (an empty path is "/").
func SameHTU(htu string, u *url.URL) bool {
	if u == nil || htu == "" {
		return false
	}
	p, err := url.Parse(htu)
	if err != nil || p.Opaque != "" || p.User != nil || p.Host == "" {
		return false
	}
	return strings.EqualFold(p.Scheme, u.Scheme) &&
		strings.EqualFold(hostPort(p), hostPort(u)) &&
		pathOf(p) == pathOf(u)
}

func hostPort(u *url.URL) string {
	host, port := u.Hostname(), u.Port()
	if port == "" || (port == "443" && strings.EqualFold(u.Scheme, "https")) || (port == "80" && strings.EqualFold(u.Scheme, "http")) {
		return host
	}
	return host + ":" + port
}

func pathOf(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

// Header returns the one DPoP proof of a request. RFC 9449 §4.3 allows
// exactly one DPoP header with exactly one value; "" with no error means none.
func Header(h http.Header) (string, error) {
	vs := h.Values("DPoP")
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", invalid("header", "more than one DPoP header")
	}
	v := strings.TrimSpace(vs[0])
	if v == "" || strings.ContainsAny(v, ", \t") {
		return "", invalid("header", "DPoP header must hold one proof")
	}
	return v, nil
}
