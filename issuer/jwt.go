package issuer

import (
	"context"
	"errors"
	"net/http"

	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/token"
)

// serveJWKS serves the public keys of JWT access tokens (RFC 7517 §5).
func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, http.MethodGet, http.MethodHead)
		return
	}
	ring := s.ring
	if ring == nil {
		ring = s.oidc.Ring // opaque access tokens, ID tokens only
	}
	set := ring.JWKS()
	if set == nil {
		ctx, cancel := s.storeCtx(r)
		err := ring.Load(ctx)
		cancel()
		if set = ring.JWKS(); set == nil {
			s.storeFailed("load signing keys", err)
			writeError(w, errKeysUnavailable)
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	// Short, so that resource servers see a rotation soon; retired keys
	// stay published long after, so a stale copy does no harm.
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(set)
}

// errKeysUnavailable answers while the signing keys cannot be loaded from
// the store.
var errKeysUnavailable = &oauthError{http.StatusServiceUnavailable, errCodeTemporarilyUnavailable, "the signing keys are unavailable, try again later"}

// newJWT signs an access token for the given grant. jti is the random
// value stored (hashed) in place of an opaque token.
func (s *Server) newJWT(r *http.Request, c *client, subject, scope string, aud []string, jkt string) (raw, jti string, oerr *oauthError) {
	jti = token.NewJTI()
	now := s.now()
	sub := subject
	if sub == "" {
		sub = c.ID // RFC 9068 §2.2: the client itself for client_credentials
	}
	iss := s.issuerFor(r)
	if aud == nil {
		aud = []string{s.defaultAudience(iss)}
	}
	claims := &jwt.Claims{
		Issuer:   iss,
		Subject:  sub,
		Audience: aud,
		ClientID: c.ID,
		Scope:    scope,
		IssuedAt: josejwt.NumericDate(now.Unix()),
		Expiry:   josejwt.NumericDate(now.Add(s.accessTTL).Unix()),
		ID:       jti,
	}
	if jkt != "" {
		claims.Confirmation = &jwt.Confirmation{JKT: jkt} // RFC 9449 §6.1
	}
	raw, err := s.ring.Sign(claims)
	if errors.Is(err, jwt.ErrNoKey) {
		// The keys are not loaded yet: load them now.
		ctx, cancel := s.storeCtx(r)
		if err = s.ring.Load(ctx); err == nil {
			raw, err = s.ring.Sign(claims)
		}
		cancel()
	}
	if err != nil {
		s.storeFailed("sign access token", err)
		return "", "", errKeysUnavailable
	}
	return raw, jti, nil
}

// jwtKey returns the store key of one of our JWT access tokens, verified,
// expired or not: its hashed jti. ok is false for anything else; err is set
// when the keys could not be loaded to tell.
func (s *Server) jwtKey(ctx context.Context, raw string) (key string, ok bool, err error) {
	if s.ring == nil {
		return "", false, nil
	}
	if _, looks := jwt.PeekIssuer(raw); !looks {
		return "", false, nil
	}
	c, _, err := s.ring.Verify(ctx, raw)
	if errors.Is(err, jwt.ErrInvalid) || err == nil && c.ID == "" {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return s.hasher.Key(c.ID), true, nil
}
