package jwt

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// TokenType is the "typ" header of JWT access tokens (RFC 9068 §2.1).
const TokenType = "at+jwt"

// Claims are the claims of a JWT access token (RFC 9068 §2.2).
type Claims struct {
	Issuer   string           `json:"iss"`
	Subject  string           `json:"sub"`
	Audience josejwt.Audience `json:"aud"`
	ClientID string           `json:"client_id"`
	Scope    string           `json:"scope,omitempty"`
	// Times are NumericDate: whole seconds, though a fraction is read.
	IssuedAt  josejwt.NumericDate `json:"iat"`
	NotBefore josejwt.NumericDate `json:"nbf,omitempty"`
	Expiry    josejwt.NumericDate `json:"exp"`
	ID        string              `json:"jti"`
	// Confirmation binds the token to a key (RFC 7800): a DPoP key's
	// thumbprint (RFC 9449 §6.1). Nil for a bearer token.
	Confirmation *Confirmation `json:"cnf,omitempty"`
}

// Confirmation is the "cnf" claim of a DPoP-bound token.
type Confirmation struct {
	JKT string `json:"jkt"`
}

// Sign returns c as a JWT signed with the ring's signing key.
func (r *Ring) Sign(c *Claims) (string, error) {
	s := r.snap.Load()
	if s == nil {
		return "", ErrNoKey
	}
	return josejwt.Signed(s.signer).Claims(c).Serialize()
}

// ErrNoAlgorithm reports a SignAs with an algorithm the ring has no key of.
var ErrNoAlgorithm = errors.New("jwt: no signing key of that algorithm")

// SignAs signs any claims set with the current key of an algorithm, typ
// JWT: OpenID Connect ID tokens (Sign is for access tokens, typ at+jwt,
// which Verify alone accepts).
func (r *Ring) SignAs(alg string, claims any) (string, error) {
	s := r.snap.Load()
	if s == nil {
		return "", ErrNoKey
	}
	sg := s.idSigners[alg]
	if sg == nil {
		return "", ErrNoAlgorithm
	}
	return josejwt.Signed(sg).Claims(claims).Serialize()
}

// Errors of Verify that are the token's fault.
var (
	// ErrInvalid reports a token that is not one of ours or is not intact.
	ErrInvalid    = errors.New("jwt: not a valid access token of ours")
	errUnknownKey = fmt.Errorf("%w: unknown key id", ErrInvalid)
)

// algorithms are the ones a token may claim; "none" and HMAC never pass,
// and each key accepts only its own (checked in Verify).
var algorithms = []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.RS256}

// Verify checks a token's header and signature against the ring's keys and
// returns its claims, both as Claims and as a map of every claim. It does
// not check iss, aud or times: the caller does. An error wrapping
// ErrInvalid is the token's fault; any other (ErrNoKey, a store that
// cannot be read for a new key id) is an outage.
func (r *Ring) Verify(ctx context.Context, raw string) (*Claims, map[string]any, error) {
	var c Claims
	var all map[string]any
	// RFC 9068 §4: typ must be at+jwt (or its media type form).
	err := r.verify(ctx, raw, func(typ string) bool {
		return strings.EqualFold(typ, TokenType) || strings.EqualFold(typ, "application/"+TokenType)
	}, &c, &all)
	if err != nil {
		return nil, nil, err
	}
	return &c, all, nil
}

// VerifyIDToken checks the header and signature of an ID token this
// ring's keys signed (typ JWT or none, never at+jwt: an access token is not
// an ID token) and returns its claims. Like Verify it checks no claim: the
// caller does. Errors are those of Verify.
func (r *Ring) VerifyIDToken(ctx context.Context, raw string) (map[string]any, error) {
	var all map[string]any
	err := r.verify(ctx, raw, func(typ string) bool { return typ == "" || strings.EqualFold(typ, "JWT") }, &all)
	return all, err
}

// verify checks a compact JWS against the ring's keys, with a typ header
// typOK accepts, and decodes its claims into out.
func (r *Ring) verify(ctx context.Context, raw string, typOK func(string) bool, out ...any) error {
	tok, err := josejwt.ParseSigned(raw, algorithms)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(tok.Headers) != 1 {
		return fmt.Errorf("%w: want one signature", ErrInvalid)
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !typOK(typ) {
		return fmt.Errorf("%w: wrong typ header", ErrInvalid)
	}
	k, err := r.key(ctx, h.KeyID)
	if err != nil {
		return err
	}
	// No algorithm confusion: a key verifies only its own algorithm.
	if h.Algorithm != string(k.Alg) {
		return fmt.Errorf("%w: algorithm %s does not match the key's", ErrInvalid, h.Algorithm)
	}
	if err := tok.Claims(k.Public, out...); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// PeekIssuer returns the "iss" claim of what looks like a JWS compact
// token, without verifying anything: it only tells which source a token is
// for. ok is false for anything else.
func PeekIssuer(raw string) (iss string, ok bool) {
	i := strings.IndexByte(raw, '.')
	if i <= 0 {
		return "", false
	}
	j := strings.IndexByte(raw[i+1:], '.')
	if j <= 0 || strings.IndexByte(raw[i+1+j+1:], '.') >= 0 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(raw[i+1 : i+1+j])
	if err != nil {
		return "", false
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Issuer == "" {
		return "", false
	}
	return c.Issuer, true
}
