package issuer

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// tokenParams are the token endpoint parameters RFC 6749 defines.
var tokenParams = []string{"grant_type", "code", "redirect_uri", "client_id", "client_secret", "code_verifier", "refresh_token", "scope"}

// tokenTypeDPoP is the token_type of a DPoP-bound access token (RFC 9449 §5).
const tokenTypeDPoP = "DPoP"

// tokenResponse is the success response of RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	// IDToken is the OpenID Connect ID token of a grant with the openid
	// scope (OIDC Core §3.1.3.3, §12.2).
	IDToken string `json:"id_token,omitempty"`
}

// serveToken is the token endpoint (RFC 6749 §3.2).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost { // RFC 6749 §3.2: POST only.
		methodNotAllowed(w, http.MethodPost)
		return
	}
	form, c, oerr := s.clientForm(w, r, tokenParams)
	var resp *tokenResponse
	var jkt string
	if oerr == nil {
		// RFC 9449 §5: the proof is checked once, after client
		// authentication, for every grant.
		jkt, oerr = s.checkDPoP(w, r, c)
	}
	if oerr == nil {
		grant := form.Get("grant_type")
		switch grant {
		case "":
			oerr = errInvalidRequest("grant_type is required")
		case grantAuthorizationCode, grantRefreshToken, grantClientCredentials:
			if !c.grants[grant] {
				oerr = errUnauthorizedClient("the client may not use this grant type")
				break
			}
			// RFC 8707 §2: the same rules for opaque and JWT access tokens.
			var aud []string
			if aud, oerr = s.requestedResources(c, form["resource"]); oerr != nil {
				break
			}
			switch grant {
			case grantAuthorizationCode:
				resp, oerr = s.grantAuthorizationCode(r, c, form, aud, jkt)
			case grantRefreshToken:
				resp, oerr = s.grantRefreshToken(r, c, form, aud, jkt)
			case grantClientCredentials:
				resp, oerr = s.grantClientCredentials(r, c, form, aud, jkt)
			}
			if oerr == nil {
				if ce := s.log.Check(zapcore.InfoLevel, "issued token"); ce != nil {
					ce.Write(zap.String("client_id", c.ID), zap.String("grant_type", grant),
						zap.String("scope", resp.Scope), zap.Bool("refresh_token", resp.RefreshToken != ""))
				}
			}
		default:
			oerr = &oauthError{http.StatusBadRequest, errCodeUnsupportedGrantType, "unsupported grant type"}
		}
	}
	if oerr != nil {
		s.obs.TokenError(oerr.Code)
		writeError(w, oerr)
		return
	}
	s.obs.TokenIssued(form.Get("grant_type"), s.metricClient(c.ID))
	s.touchClient(c)
	writeJSON(w, http.StatusOK, resp)
}

// grantAuthorizationCode redeems an authorization code (RFC 6749 §4.1.3).
func (s *Server) grantAuthorizationCode(r *http.Request, c *client, form url.Values, aud []string, jkt string) (*tokenResponse, *oauthError) {
	raw := form.Get("code")
	if raw == "" {
		return nil, errInvalidRequest("code is required")
	}
	verifier := form.Get("code_verifier")
	// RFC 7636 §4.1: 43-128 unreserved characters.
	if verifier != "" && !validPKCEString(verifier) {
		return nil, errInvalidGrant("malformed code_verifier")
	}
	if !token.WellFormed(token.CodePrefix, raw) {
		return nil, errInvalidGrant("invalid authorization code")
	}
	ctx, cancel := s.storeCtx(r)
	code, err := s.codes.ConsumeCode(ctx, s.hasher.Key(raw))
	cancel()
	switch {
	case errors.Is(err, stores.ErrConsumed) && code != nil:
		// RFC 6749 §4.1.2: a code used twice revokes the tokens issued from it.
		s.log.Warn("authorization code replayed, revoking its grant",
			zap.String("client_id", c.ID), zap.String("code_client_id", code.ClientID), zap.String("family", code.Family))
		if oerr := s.revokeFamily(r, code.Family); oerr != nil {
			return nil, oerr
		}
		return nil, errInvalidGrant("invalid authorization code")
	case s.storeFailed("consume code", err):
		return nil, errUnavailable
	case err != nil:
		return nil, errInvalidGrant("invalid authorization code")
	}
	now := s.now()
	if code.ClientID != c.ID {
		// RFC 6749 §4.1.3: the code must have been issued to this client.
		s.log.Warn("authorization code presented by another client",
			zap.String("client_id", c.ID), zap.String("code_client_id", code.ClientID), zap.String("family", code.Family))
		return nil, errInvalidGrant("invalid authorization code")
	}
	if !now.Before(code.ExpiresAt) {
		return nil, errInvalidGrant("invalid authorization code")
	}
	// RFC 6749 §4.1.3: redirect_uri must be identical to the one in the
	// authorization request, if that request had one.
	if ru := form.Get("redirect_uri"); code.RedirectURI != "" && ru != code.RedirectURI ||
		code.RedirectURI == "" && ru != "" && !c.redirects[ru] {
		return nil, errInvalidGrant("redirect_uri does not match the authorization request")
	}
	if code.CodeChallenge != "" {
		// RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) == code_challenge.
		if verifier == "" {
			return nil, errInvalidGrant("code_verifier is required")
		}
		sum := sha256.Sum256([]byte(verifier))
		got := base64.RawURLEncoding.EncodeToString(sum[:])
		if code.CodeChallengeMethod != pkceS256 || subtle.ConstantTimeCompare([]byte(got), []byte(code.CodeChallenge)) != 1 {
			return nil, errInvalidGrant("code_verifier does not match the code_challenge")
		}
	} else if verifier != "" {
		// A verifier for a code without a challenge is a PKCE downgrade
		// attempt (OAuth 2.1 §4.1.3).
		return nil, errInvalidGrant("code_verifier given but the authorization request had no code_challenge")
	}
	// The grant follows the client's registration as it is now: a scope
	// dropped since the code was issued is not granted.
	scope, ok := c.currentScope(code.Scope)
	if !ok {
		return nil, errInvalidGrant("none of the granted scope is still registered for the client")
	}
	// RFC 9449 §10: a code bound by dpop_jkt is redeemed only with a proof
	// of that key.
	if code.JKT != "" && subtle.ConstantTimeCompare([]byte(jkt), []byte(code.JKT)) != 1 {
		return nil, errInvalidGrant("the DPoP proof's key is not the one the authorization request named in dpop_jkt")
	}
	// RFC 8707 §2.2: the resources of the authorization request bound the
	// grant; the refresh token keeps the whole grant.
	access, grant, oerr := s.narrowAudience(c, code.Audience, aud)
	if oerr != nil {
		return nil, oerr
	}
	return s.issue(r, c, code.Subject, scope, scope, code.Family, c.grants[grantRefreshToken], access, grant, jkt, refreshJKT(c, jkt, ""), code.OIDC)
}

// grantRefreshToken rotates a refresh token (RFC 6749 §6).
func (s *Server) grantRefreshToken(r *http.Request, c *client, form url.Values, aud []string, jkt string) (*tokenResponse, *oauthError) {
	raw := form.Get("refresh_token")
	if raw == "" {
		return nil, errInvalidRequest("refresh_token is required")
	}
	requested, ok := parseScope(form.Get("scope"))
	if !ok {
		return nil, errInvalidScope("malformed scope")
	}
	if !token.WellFormed(token.RefreshPrefix, raw) {
		return nil, errInvalidGrant("invalid refresh token")
	}
	key := s.hasher.Key(raw)

	// Look before consuming, so that another client or a too wide scope is
	// refused without burning the token of the legitimate client.
	ctx, cancel := s.storeCtx(r)
	live, err := s.tokens.LookupToken(ctx, stores.RefreshToken, key)
	cancel()
	if s.storeFailed("lookup refresh token", err) {
		return nil, errUnavailable
	}
	if err == nil {
		if oerr := s.checkRefresh(c, live, requested, aud, jkt); oerr != nil {
			return nil, oerr
		}
	}

	ctx, cancel = s.storeCtx(r)
	old, err := s.tokens.ConsumeRefreshToken(ctx, key)
	cancel()
	switch {
	case errors.Is(err, stores.ErrConsumed) && old != nil:
		// RFC 6749 §10.4, RFC 9700 §4.14.2: a rotated refresh token presented
		// again means it leaked; revoke the whole grant.
		s.log.Warn("refresh token replayed, revoking its grant",
			zap.String("client_id", c.ID), zap.String("token_client_id", old.ClientID), zap.String("family", old.Family))
		if oerr := s.revokeFamily(r, old.Family); oerr != nil {
			return nil, oerr
		}
		return nil, errInvalidGrant("invalid refresh token")
	case s.storeFailed("consume refresh token", err):
		return nil, errUnavailable
	case err != nil:
		return nil, errInvalidGrant("invalid refresh token")
	}
	if oerr := s.checkRefresh(c, old, requested, aud, jkt); oerr != nil {
		return nil, oerr
	}
	if !s.now().Before(old.ExpiresAt) {
		return nil, errInvalidGrant("invalid refresh token")
	}
	// The grant shrinks to what the client is registered for now; the new
	// refresh token keeps only that.
	grant, _ := c.currentScope(old.Scope) // checkRefresh made sure some is left
	scope := grant
	if len(requested) > 0 {
		// RFC 6749 §6: a narrower scope for the access token; the new refresh
		// token keeps the whole (current) grant.
		scope = strings.Join(requested, " ")
	}
	// RFC 8707 §2.2: the same for the audience (checkRefresh made sure the
	// request stays within the grant).
	access, grantAud, _ := s.narrowAudience(c, old.Audience, aud)
	// OIDC Core §12.2: the new ID token keeps sub and auth_time, no nonce.
	return s.issue(r, c, old.Subject, scope, grant, old.Family, true, access, grantAud, jkt, refreshJKT(c, jkt, old.JKT), old.OIDC)
}

// checkRefresh checks a refresh token against the client refreshing it
// (RFC 6749 §6) and the requested scope and resources, which must not
// exceed the original grant nor the client's current registration
// (RFC 8707 §2.2). A refresh token bound to a DPoP key refreshes only with
// a proof of that key (RFC 9449 §5.0).
func (s *Server) checkRefresh(c *client, t *stores.Token, requested, resources []string, jkt string) *oauthError {
	if t.ClientID != c.ID {
		return errInvalidGrant("invalid refresh token")
	}
	if t.JKT != "" && subtle.ConstantTimeCompare([]byte(jkt), []byte(t.JKT)) != 1 {
		return errInvalidGrant("the refresh token is bound to another DPoP key")
	}
	if _, ok := c.currentScope(t.Scope); !ok {
		return errInvalidGrant("none of the granted scope is still registered for the client")
	}
	granted := strings.Fields(t.Scope)
	for _, sc := range requested {
		if !slices.Contains(granted, sc) {
			return errInvalidScope("the requested scope exceeds the original grant")
		}
		if !c.scopes[sc] {
			return errInvalidScope("the requested scope is no longer registered for the client")
		}
	}
	_, _, oerr := s.narrowAudience(c, t.Audience, resources)
	return oerr
}

// currentScope intersects a granted scope with the client's scopes as they
// are registered now, keeping the grant's order. ok is false when the grant
// had scopes and none of them is left: such a grant is worth nothing, and
// an empty scope must not turn into "no scope asked".
func (c *client) currentScope(granted string) (scope string, ok bool) {
	tokens := strings.Fields(granted)
	kept := tokens[:0]
	for _, sc := range tokens {
		if c.scopes[sc] {
			kept = append(kept, sc)
		}
	}
	if len(kept) == len(tokens) {
		return granted, true
	}
	return strings.Join(kept, " "), len(kept) > 0
}

// grantClientCredentials issues an access token to a confidential client
// for itself (RFC 6749 §4.4).
func (s *Server) grantClientCredentials(r *http.Request, c *client, form url.Values, aud []string, jkt string) (*tokenResponse, *oauthError) {
	if c.Public() { // unreachable: New refuses the grant for public clients
		return nil, errUnauthorizedClient("public clients cannot use client_credentials")
	}
	scope, oerr := c.grantScope(form.Get("scope"))
	if oerr != nil {
		return nil, oerr
	}
	// RFC 6749 §4.4.3: no refresh token.
	// No family: nothing else is ever issued from this grant, so there is
	// nothing to revoke together, and stores skip the family index.
	return s.issue(r, c, "", scope, "", "", false, aud, nil, jkt, "", nil)
}

// issue mints an access token for aud and, when withRefresh, a refresh
// token of the same family for the grant's audience refreshAud, and stores
// both with one call. A nil audience is the default one (see resource.go).
// With a JWT ring the access token is a JWT, stored under its jti. A
// non-empty jkt binds the access token to that DPoP key, refreshJKT the
// refresh token (RFC 9449 §5, §6). An OpenID Connect grant (og) is kept
// with both tokens, and its ID token added when the scope holds openid.
func (s *Server) issue(r *http.Request, c *client, subject, scope, refreshScope, family string, withRefresh bool, aud, refreshAud []string, jkt, refreshJKT string, og *stores.OIDCGrant) (*tokenResponse, *oauthError) {
	now := s.now()
	var access, stored string
	var err error
	if s.ring != nil {
		var oerr *oauthError
		if access, stored, oerr = s.newJWT(r, c, subject, scope, aud, jkt); oerr != nil {
			return nil, oerr
		}
	} else {
		if access, err = token.New(token.AccessPrefix); err != nil {
			return nil, errUnavailable
		}
		stored = access
	}
	resp := &tokenResponse{
		AccessToken: access,
		TokenType:   "Bearer", // RFC 6750
		ExpiresIn:   int64(s.accessTTL / time.Second),
		Scope:       scope,
	}
	if jkt != "" {
		resp.TokenType = tokenTypeDPoP
	}
	records := []*stores.Token{{
		Key: s.hasher.Key(stored), Kind: stores.AccessToken, ClientID: c.ID, Subject: subject,
		Scope: scope, Family: family, Audience: aud, IssuedAt: now, ExpiresAt: now.Add(s.accessTTL), JKT: jkt,
		OIDC: s.tokenOIDC(og, scope),
	}}
	if withRefresh {
		refresh, err := token.New(token.RefreshPrefix)
		if err != nil {
			return nil, errUnavailable
		}
		resp.RefreshToken = refresh
		records = append(records, &stores.Token{
			Key: s.hasher.Key(refresh), Kind: stores.RefreshToken, ClientID: c.ID, Subject: subject,
			Scope: refreshScope, Family: family, Audience: refreshAud, IssuedAt: now, ExpiresAt: now.Add(s.refreshTTL), JKT: refreshJKT,
			OIDC: s.tokenOIDC(og, refreshScope),
		})
	}
	ctx, cancel := s.storeCtx(r)
	err = s.tokens.InsertTokens(ctx, records...)
	cancel()
	if errors.Is(err, stores.ErrRevoked) {
		// The grant was revoked (a replay) while this redemption ran.
		s.log.Warn("tokens refused: their grant was revoked meanwhile",
			zap.String("client_id", c.ID), zap.String("family", family))
		return nil, errInvalidGrant("the authorization grant has been revoked")
	}
	if err != nil {
		s.storeFailed("insert tokens", stores.Unavailable(err))
		return nil, errUnavailable
	}
	if og != nil && s.openID(scope) {
		var oerr *oauthError
		if resp.IDToken, oerr = s.idToken(r, c, subject, scope, og, resp.AccessToken); oerr != nil {
			return nil, oerr
		}
	}
	return resp, nil
}

// revokeFamily revokes every token of a grant family after a replay. The
// store keeps a revoked-family marker past the end of life of any token the
// family could still get, so a winning redemption racing this replay has
// its tokens refused on insert (stores.ErrRevoked) instead of living on.
func (s *Server) revokeFamily(r *http.Request, family string) *oauthError {
	ctx, cancel := s.storeCtx(r)
	err := s.tokens.RevokeFamily(ctx, family, s.familyMarkerUntil())
	cancel()
	if err != nil && !errors.Is(err, stores.ErrNotFound) {
		s.storeFailed("revoke family", stores.Unavailable(err))
		return errUnavailable
	}
	return nil
}

// familyMarkerUntil is how long a revoked family stays marked: past the
// life of any token a redemption or rotation racing the revocation could
// still issue into it, plus the store timeout for that insert to end.
func (s *Server) familyMarkerUntil() time.Time {
	return s.now().Add(FamilyMarkerLifetime(s.accessTTL, s.refreshTTL, s.storeTimeout))
}

// FamilyMarkerLifetime is how long a revoked grant family stays marked:
// past the life of any token a redemption or rotation racing the
// revocation could still issue into it, plus the store timeout for that
// insert to end. Zero durations take their defaults, as in Config.
func FamilyMarkerLifetime(accessTTL, refreshTTL, storeTimeout time.Duration) time.Duration {
	return max(orDefault(refreshTTL, DefaultRefreshTokenLifetime), orDefault(accessTTL, DefaultAccessTokenLifetime)) +
		2*orDefault(storeTimeout, DefaultStoreTimeout)
}

// parseScope splits a scope parameter into distinct scope-tokens (RFC 6749
// §3.3). ok is false when a token has characters outside the grammar.
func parseScope(scope string) (tokens []string, ok bool) {
	for _, sc := range strings.Split(scope, " ") {
		if sc == "" {
			continue
		}
		if !validScopeToken(sc) {
			return nil, false
		}
		if !slices.Contains(tokens, sc) {
			tokens = append(tokens, sc)
		}
	}
	return tokens, true
}

// grantScope returns the scope to grant the client for a requested scope
// parameter: all of its scopes when none is requested, in the order they
// are registered, else the requested ones if the client may have them all
// (RFC 6749 §3.3).
func (c *client) grantScope(param string) (string, *oauthError) {
	requested, ok := parseScope(param)
	if !ok {
		return "", errInvalidScope("malformed scope")
	}
	for _, sc := range requested {
		if !c.scopes[sc] {
			return "", errInvalidScope("the client may not request this scope")
		}
	}
	if len(requested) == 0 {
		return strings.Join(c.Scopes, " "), nil
	}
	granted := make([]string, 0, len(requested))
	for _, sc := range c.Scopes {
		if slices.Contains(requested, sc) {
			granted = append(granted, sc)
		}
	}
	return strings.Join(granted, " "), nil
}
