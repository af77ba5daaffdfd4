package external

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/validator"
)

// signatureAlgorithms are the algorithms a JWT may be signed with: the
// asymmetric ones only. HMAC is refused outright (a verifier holding the
// issuer's public key must never treat it as a shared secret), and so is
// "none", which go-jose never accepts.
var signatureAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// JWT accepts the JWT access tokens (RFC 9068) of one issuer, verified
// against its published keys. A token that verified is remembered (by its
// hash) until it expires or the key set changes, so a client reusing its
// token costs one signature check, not one per request.
type JWT struct {
	cfg      Config
	keys     *keySet
	verified *validator.Memo[cached]
}

// verifiedEntries bounds the tokens remembered as verified.
const verifiedEntries = 10_000

// NewJWT returns the source of cfg.Issuer's JWTs. It does no I/O: the keys
// are fetched when the first token needs them.
func NewJWT(cfg Config) (*JWT, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if len(cfg.Audiences) == 0 {
		// Without it, a token the issuer minted for any other API, or an
		// ID token, would pass.
		return nil, fmt.Errorf("external: issuer %s: an audience is required", cfg.Issuer)
	}
	j := &JWT{cfg: cfg, verified: validator.NewMemo[cached](verifiedEntries)}
	if cfg.Keys != nil {
		if cfg.Keys.set.cfg.Issuer != cfg.Issuer {
			return nil, fmt.Errorf("external: keys of %s given for issuer %s", cfg.Keys.set.cfg.Issuer, cfg.Issuer)
		}
		j.keys = cfg.Keys.set
	} else {
		j.keys = newKeySet(&j.cfg, &discovery{cfg: &j.cfg})
	}
	return j, nil
}

// Recognize reports whether raw is a compact JWS whose payload names this
// issuer. The signature is not checked here.
func (j *JWT) Recognize(raw string) bool {
	iss, ok := peekIssuer(raw)
	return ok && iss == j.cfg.Issuer
}

// peekIssuer decodes the iss claim of a compact JWS without verifying it.
func peekIssuer(raw string) (string, bool) {
	if len(raw) > maxTokenLen || strings.Count(raw, ".") != 2 {
		return "", false
	}
	payload := raw[strings.IndexByte(raw, '.')+1 : strings.LastIndexByte(raw, '.')]
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || len(b) == 0 || b[0] != '{' {
		return "", false
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &c) != nil {
		return "", false
	}
	return c.Iss, true
}

// Verify checks the signature against the issuer's keys, then iss, aud, exp
// and nbf.
func (j *JWT) Verify(ctx context.Context, raw string) (validator.Grant, error) {
	hash := sha256.Sum256([]byte(raw))
	now := j.cfg.Now()
	if e, until, ok := j.verified.Get(hash); ok && now.Before(until) {
		if _, version := j.keys.current(); version == e.version && !j.keys.due() {
			return e.grant, nil
		}
	}
	tok, err := jwt.ParseSigned(raw, signatureAlgorithms)
	if err != nil || len(tok.Headers) != 1 {
		return validator.Grant{}, fmt.Errorf("%w: %v", validator.ErrInvalidToken, err)
	}
	h := tok.Headers[0]
	if err := j.checkTyp(h); err != nil {
		return validator.Grant{}, err
	}
	keys, version, err := j.keys.lookup(ctx, h.KeyID)
	if err != nil {
		return validator.Grant{}, err
	}
	var claims jwt.Claims
	var all map[string]any
	verified := false
	for _, key := range keys {
		if key.Algorithm != "" && key.Algorithm != h.Algorithm {
			continue // RFC 7517 §4.4: the key is for another algorithm.
		}
		// go-jose also refuses an algorithm of another key type (ES256
		// with an RSA key).
		if tok.Claims(key.Key, &claims, &all) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return validator.Grant{}, fmt.Errorf("%w: no key of %s verifies the signature", validator.ErrInvalidToken, j.cfg.Issuer)
	}
	if claims.Expiry == nil {
		return validator.Grant{}, fmt.Errorf("%w: no exp claim", validator.ErrInvalidToken) // RFC 9068 §2.2
	}
	err = claims.ValidateWithLeeway(jwt.Expected{
		Issuer:      j.cfg.Issuer,
		AnyAudience: jwt.Audience(j.cfg.Audiences),
		Time:        now,
	}, j.cfg.Leeway)
	if err != nil {
		return validator.Grant{}, fmt.Errorf("%w: %v", validator.ErrInvalidToken, err)
	}
	// An ID token (OIDC Core §2, §3.1.3.6) is for the client, not for an
	// API, even when its aud names one: it has a nonce or an at_hash,
	// which no access token needs.
	for _, name := range []string{"nonce", "at_hash"} {
		if _, ok := all[name]; ok {
			return validator.Grant{}, fmt.Errorf("%w: an ID token (%s claim)", validator.ErrInvalidToken, name)
		}
	}
	// RFC 9449 §6.1: a token bound to a DPoP key passes only with a proof
	// of it, which the validator checks.
	jkt, err := confirmation(all)
	if err != nil {
		return validator.Grant{}, err
	}
	t := grantToken(all)
	// The validator compares exp with its own clock: give it the leeway.
	t.ExpiresAt = claims.Expiry.Time().Add(j.cfg.Leeway)
	if claims.IssuedAt != nil {
		t.IssuedAt = claims.IssuedAt.Time()
	}
	g := validator.Grant{Token: t, Claims: all, Issuer: j.cfg.foreign, JKT: jkt}
	j.verified.Put(hash, cached{grant: g, version: version}, t.ExpiresAt, now)
	return g, nil
}

// checkTyp applies RFC 9068 §4: a resource server checks that typ is
// at+jwt. Many servers still send "JWT" or none, which pass unless
// RequireTyp is set; a typ naming another kind of JWT (logout+jwt,
// secevent+jwt, dpop+jwt) never does. Media types compare
// case-insensitively, with or without "application/" (RFC 7515 §4.1.9).
func (j *JWT) checkTyp(h jose.Header) error {
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	typ = strings.ToLower(typ)
	typ = strings.TrimPrefix(typ, "application/")
	switch {
	case typ == "at+jwt":
		return nil
	case j.cfg.RequireTyp:
		return fmt.Errorf("%w: typ %q is not at+jwt", validator.ErrInvalidToken, typ)
	case strings.HasSuffix(typ, "+jwt"):
		return fmt.Errorf("%w: typ %q names another kind of token", validator.ErrInvalidToken, typ)
	}
	return nil
}

// confirmation returns the DPoP key thumbprint of a token's cnf claim (RFC
// 9449 §6), "" when it has none. A cnf the guard cannot check (RFC 8705's
// certificate thumbprint, a malformed one) refuses the token: a bearer
// request does not prove the binding.
func confirmation(claims map[string]any) (string, error) {
	v, ok := claims["cnf"]
	if !ok {
		return "", nil
	}
	cnf, _ := v.(map[string]any)
	jkt, _ := cnf["jkt"].(string)
	if jkt == "" {
		return "", fmt.Errorf("%w: bound to a key by other means than DPoP (cnf without jkt)", validator.ErrInvalidToken)
	}
	return jkt, nil
}

// grantToken maps the claims of a JWT or an introspection answer onto a
// token: sub, client_id and scope. ExpiresAt is left to the caller.
func grantToken(claims map[string]any) *stores.Token {
	t := &stores.Token{Kind: stores.AccessToken}
	t.Subject, _ = claims["sub"].(string)
	// RFC 9068 §2.2 and RFC 7662 §2.2 say client_id; some servers only
	// send azp (OIDC) or cid (Okta).
	for _, name := range []string{"client_id", "azp", "cid"} {
		if s, ok := claims[name].(string); ok && s != "" {
			t.ClientID = s
			break
		}
	}
	t.Scope = scopeClaim(claims)
	return t
}

// scopeClaim returns the granted scopes, space separated: the scope claim
// (RFC 9068 §2.2.3, a string), or scp as some servers send it (Entra and
// Okta, a string or an array).
func scopeClaim(claims map[string]any) string {
	if s, ok := claims["scope"].(string); ok {
		return s
	}
	switch scp := claims["scp"].(type) {
	case string:
		return scp
	case []any:
		var b bytes.Buffer
		for _, v := range scp {
			if s, ok := v.(string); ok && s != "" {
				if b.Len() > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(s)
			}
		}
		return b.String()
	}
	return ""
}

// SelfTimed implements validator.SelfTimed: a key fetch has the issuer's
// timeout.
func (*JWT) SelfTimed() {}

// Interface guards
var (
	_ validator.Source    = (*JWT)(nil)
	_ validator.SelfTimed = (*JWT)(nil)
)
