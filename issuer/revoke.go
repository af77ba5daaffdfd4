package issuer

import (
	"errors"
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// revokeParams are the revocation and introspection request parameters
// (RFC 7009 §2.1, RFC 7662 §2.1) plus client authentication.
var revokeParams = []string{"token", "token_type_hint", "client_id", "client_secret"}

// serveRevoke is the revocation endpoint (RFC 7009).
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost { // RFC 7009 §2.1
		methodNotAllowed(w, http.MethodPost)
		return
	}
	// RFC 7009 §2.1: confidential clients authenticate; public clients
	// identify themselves with client_id.
	form, c, oerr := s.clientForm(w, r, revokeParams)
	if oerr == nil && form.Get("token") == "" {
		oerr = errInvalidRequest("token is required")
	}
	if oerr == nil {
		oerr = s.revoke(r, c, form.Get("token"))
	}
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	// RFC 7009 §2.2: 200 whether or not the token was valid.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
}

// revoke revokes raw if it is a live token of client c. The kind comes from
// the token's prefix, so token_type_hint is not needed (RFC 7009 §2.1
// allows ignoring it).
func (s *Server) revoke(r *http.Request, c *client, raw string) *oauthError {
	kind, key, ok, oerr := s.tokenKey(r, raw)
	if oerr != nil || !ok {
		return oerr // RFC 7009 §2.2: an invalid token is no error.
	}
	ctx, cancel := s.storeCtx(r)
	t, err := s.tokens.LookupToken(ctx, kind, key)
	cancel()
	if s.storeFailed("lookup token", err) {
		return errUnavailable
	}
	// RFC 7009 §2.1: a client may only revoke its own tokens; another
	// client's token is treated like an unknown one.
	if err != nil || t.ClientID != c.ID {
		return nil
	}
	ctx, cancel = s.storeCtx(r)
	if kind == stores.RefreshToken && t.Family != "" {
		// RFC 7009 §2.1: revoking a refresh token SHOULD also invalidate the
		// access tokens of the same grant.
		err = s.tokens.RevokeFamily(ctx, t.Family, s.familyMarkerUntil())
	}
	if err == nil {
		// The token itself too, whatever its family index holds.
		err = s.tokens.RevokeToken(ctx, kind, key)
	}
	cancel()
	if err != nil && !errors.Is(err, stores.ErrNotFound) {
		s.storeFailed("revoke", stores.Unavailable(err))
		return errUnavailable
	}
	if ce := s.log.Check(zapcore.InfoLevel, "revoked token"); ce != nil {
		ce.Write(zap.String("client_id", c.ID), zap.Stringer("kind", kind), zap.String("family", t.Family))
	}
	return nil
}

// tokenKey returns the kind and store key of a token: an opaque token's
// kind comes from its prefix and its key is its hash; one of our JWT access
// tokens, verified, is stored under the hash of its jti. ok is false for
// anything else.
func (s *Server) tokenKey(r *http.Request, raw string) (kind stores.Kind, key string, ok bool, oerr *oauthError) {
	if kind, ok = tokenKind(raw); ok {
		return kind, s.hasher.Key(raw), true, nil
	}
	ctx, cancel := s.storeCtx(r)
	key, ok, err := s.jwtKey(ctx, raw)
	cancel()
	if err != nil {
		s.storeFailed("load signing keys", err)
		return 0, "", false, errKeysUnavailable
	}
	return stores.AccessToken, key, ok, nil
}

// tokenKind tells an access from a refresh token by its prefix; ok is false
// for anything that is neither.
func tokenKind(raw string) (kind stores.Kind, ok bool) {
	switch {
	case token.WellFormed(token.AccessPrefix, raw):
		return stores.AccessToken, true
	case token.WellFormed(token.RefreshPrefix, raw):
		return stores.RefreshToken, true
	}
	return 0, false
}
