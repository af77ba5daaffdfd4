package validator

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// JWTConfig configures the source of our own JWT access tokens.
type JWTConfig struct {
	// Ring holds the keys the tokens are verified with. Required.
	Ring *jwt.Ring
	// Issuer reports whether iss is one of our issuer identifiers.
	// Required.
	Issuer func(iss string) bool
	// Audience reports whether an "aud" value is accepted: a token passes
	// when its "aud" holds one (RFC 9068 §4). Required.
	Audience func(aud string) bool
	// Tokens is where the token's jti is looked up, hashed by Hasher, to
	// tell whether it was revoked. It must answer from memory on the hot
	// path (an in-process store, or a lookupcache fed by the revocation
	// feed): the guarantee of how soon a revocation is refused is its own.
	Tokens stores.TokenStore
	Hasher *token.Hasher
	// Leeway tolerates clocks this far apart for exp and nbf. Default: 30s.
	Leeway time.Duration
	// MaxEntries bounds the verified tokens kept in memory, about 900 bytes
	// each with their claims; past it one is dropped for each new one, which
	// then costs one more signature check. Default: 20,000.
	MaxEntries int
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// JWTSource accepts our own JWT access tokens (RFC 9068): it checks the
// signature, typ, iss, aud, exp and nbf locally, and remembers the result
// for the token's life, so the signature is checked once per token and
// process. Revocation still wins: every request asks Tokens whether the
// jti was revoked, an answer from memory that revocations evict.
type JWTSource struct {
	cfg      JWTConfig
	verified *Memo[verified] // until exp plus the leeway
}

// verified is a token whose signature and claims passed.
type verified struct {
	key    string // the store key of its jti
	claims map[string]any
	jkt    string // cnf.jkt, RFC 9449 §6.1
}

// NewJWTSource checks cfg and returns a JWTSource.
func NewJWTSource(cfg JWTConfig) (*JWTSource, error) {
	if cfg.Ring == nil || cfg.Issuer == nil || cfg.Audience == nil || cfg.Tokens == nil || cfg.Hasher == nil {
		return nil, errors.New("validator: a JWT source needs a ring, issuer and audience checks, a token store and a hasher")
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 20_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &JWTSource{cfg: cfg, verified: NewMemo[verified](cfg.MaxEntries)}, nil
}

// Recognize reports whether raw is a JWT whose iss is ours. The header
// our keys sign with tells at once; any other header (a token of another
// go-jose version, say) is recognised by decoding its iss.
func (s *JWTSource) Recognize(raw string) bool {
	if i := strings.IndexByte(raw, '.'); i > 0 && s.cfg.Ring.OwnsHeader(raw[:i]) {
		return true
	}
	iss, ok := jwt.PeekIssuer(raw)
	return ok && s.cfg.Issuer(iss)
}

// Verify checks raw and whether its jti is still live.
func (s *JWTSource) Verify(ctx context.Context, raw string) (Grant, error) {
	d := sha256.Sum256([]byte(raw))
	now := s.cfg.Now()
	v, until, ok := s.verified.Get(d)
	if !ok {
		var err error
		if v, until, err = s.verify(ctx, raw, now); err != nil {
			return Grant{}, err
		}
		s.verified.Put(d, v, until, now)
	} else if !now.Before(until) {
		return Grant{}, fmt.Errorf("%w: expired", ErrInvalidToken)
	}
	// Revocation wins over the signature.
	tok, err := s.cfg.Tokens.LookupToken(ctx, stores.AccessToken, v.key)
	switch {
	case errors.Is(err, stores.ErrNotFound):
		return Grant{}, fmt.Errorf("%w: revoked", ErrInvalidToken)
	case err != nil:
		return Grant{}, err
	}
	return Grant{Token: tok, Claims: v.claims, JKT: v.jkt}, nil
}

// verify checks what a token says of itself, and says until when it passes.
func (s *JWTSource) verify(ctx context.Context, raw string, now time.Time) (verified, time.Time, error) {
	c, all, err := s.cfg.Ring.Verify(ctx, raw)
	if errors.Is(err, jwt.ErrInvalid) {
		return verified{}, time.Time{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if err != nil {
		return verified{}, time.Time{}, err // no keys loaded: an outage
	}
	switch {
	case !s.cfg.Issuer(c.Issuer):
		return verified{}, time.Time{}, fmt.Errorf("%w: issuer", ErrInvalidToken)
	case !slices.ContainsFunc(c.Audience, s.cfg.Audience):
		return verified{}, time.Time{}, fmt.Errorf("%w: audience", ErrInvalidToken)
	case c.ID == "" || c.Expiry == 0:
		return verified{}, time.Time{}, fmt.Errorf("%w: no jti or exp", ErrInvalidToken)
	case !now.Before(c.Expiry.Time().Add(s.cfg.Leeway)):
		return verified{}, time.Time{}, fmt.Errorf("%w: expired", ErrInvalidToken)
	case c.NotBefore != 0 && now.Add(s.cfg.Leeway).Before(c.NotBefore.Time()):
		return verified{}, time.Time{}, fmt.Errorf("%w: not yet valid", ErrInvalidToken)
	}
	var jkt string
	if c.Confirmation != nil {
		if jkt = c.Confirmation.JKT; jkt == "" {
			return verified{}, time.Time{}, fmt.Errorf("%w: cnf without jkt", ErrInvalidToken)
		}
	}
	return verified{key: s.cfg.Hasher.Key(c.ID), claims: all, jkt: jkt}, c.Expiry.Time().Add(s.cfg.Leeway), nil
}

var _ Source = (*JWTSource)(nil)
