package issuer

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"net/http"

	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/stores"
)

// defaultIDTokenAlg signs ID tokens of clients that name no
// id_token_signed_response_alg (OIDC Core §2, OpenID Connect Registration
// §2).
const defaultIDTokenAlg = "RS256"

// errCodeServerError is RFC 6749 §5.2's answer to a misconfiguration.
const errCodeServerError = "server_error"

// idTokenAlg is the algorithm of a client's ID tokens.
func idTokenAlg(c *client) string {
	if c.IDTokenSignedResponseAlg != "" {
		return c.IDTokenSignedResponseAlg
	}
	return defaultIDTokenAlg
}

// tokenOIDC is what a token of a grant keeps of its OpenID Connect state:
// everything but the nonce, which only the code's ID token echoes (OIDC
// Core §12.2), and only the claims the token's scope releases, so that the
// guard's {oauth2.claims.*} and UserInfo show no more than the scope.
func (s *Server) tokenOIDC(g *stores.OIDCGrant, scope string) *stores.OIDCGrant {
	if g == nil {
		return nil
	}
	t := *g
	t.Nonce = ""
	if len(g.Claims) > 0 && s.oidc != nil {
		t.Claims = nil
		for _, cl := range s.oidc.Claims {
			if v, ok := g.Claims[cl.Name]; ok && hasScope(scope, cl.Scope) {
				if t.Claims == nil {
					t.Claims = make(map[string]any, len(g.Claims))
				}
				t.Claims[cl.Name] = v
			}
		}
	}
	return &t
}

// idToken mints the ID token of a grant (OIDC Core §2, §3.1.3.6): for the
// client, about user (pairwise applied here), with the grant's auth_time,
// nonce (code redemption only), session and the claims the scope releases,
// and at_hash over the access token as returned (§3.1.3.8).
func (s *Server) idToken(r *http.Request, c *client, user, scope string, g *stores.OIDCGrant, access string) (string, *oauthError) {
	now := s.now()
	alg := idTokenAlg(c)
	claims := map[string]any{}
	s.releasedClaims(g, scope, claims)
	claims["iss"] = s.issuerFor(r)
	claims["sub"] = s.subjectFor(c, user)
	claims["aud"] = c.ID
	claims["azp"] = c.ID
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(s.oidc.IDTokenLifetime).Unix()
	if !g.AuthTime.IsZero() {
		claims["auth_time"] = g.AuthTime.Unix()
	}
	if g.Nonce != "" {
		claims["nonce"] = g.Nonce
	}
	if g.SessionID != "" {
		claims["sid"] = g.SessionID
	}
	if access != "" {
		claims["at_hash"] = atHash(alg, access)
	}
	raw, err := s.oidc.Ring.SignAs(alg, claims)
	if errors.Is(err, jwt.ErrNoKey) {
		ctx, cancel := s.storeCtx(r)
		if err = s.oidc.Ring.Load(ctx); err == nil {
			raw, err = s.oidc.Ring.SignAs(alg, claims)
		}
		cancel()
	}
	if errors.Is(err, jwt.ErrNoAlgorithm) {
		s.log.Error("no signing key for the client's id_token_signed_response_alg")
		return "", &oauthError{http.StatusInternalServerError, errCodeServerError, "no key signs " + alg}
	}
	if err != nil {
		s.storeFailed("sign ID token", err)
		return "", errKeysUnavailable
	}
	return raw, nil
}

// atHash is the base64url left half of the access token's hash under the
// hash of the ID token's algorithm (OIDC Core §3.1.3.6); SHA-512 for
// EdDSA over Ed25519.
func atHash(alg, access string) string {
	var sum []byte
	if alg == "EdDSA" {
		s := sha512.Sum512([]byte(access))
		sum = s[:]
	} else {
		s := sha256.Sum256([]byte(access))
		sum = s[:]
	}
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}
