package issuer

import (
	"encoding/json"
	"net/http"

	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/stores"
)

// introspection is the response of RFC 7662 §2.2.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Subject   string `json:"sub,omitempty"`
	ExpiresAt int64  `json:"exp,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Issuer    string `json:"iss,omitempty"`
	// Audience is the token's audience (RFC 7662 §2.2, RFC 8707).
	Audience audience `json:"aud,omitempty"`
	// Confirmation is the DPoP key a token is bound to (RFC 9449 §6.2).
	Confirmation *jwt.Confirmation `json:"cnf,omitempty"`
}

// audience is encoded like a JWT's "aud" (RFC 7519 §4.1.3): a string when
// there is one, else a list.
type audience []string

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// serveIntrospect is the introspection endpoint (RFC 7662).
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost { // RFC 7662 §2.1
		methodNotAllowed(w, http.MethodPost)
		return
	}
	form, c, oerr := s.clientForm(w, r, revokeParams)
	// RFC 7662 §2.1, §4: callers must be authorized; a public client's ID
	// proves nothing, so only confidential clients may introspect.
	if oerr == nil && c.Public() {
		oerr = errInvalidClient("introspection requires a confidential client")
	}
	if oerr == nil && form.Get("token") == "" {
		oerr = errInvalidRequest("token is required")
	}
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	resp, oerr := s.introspect(r, c, form.Get("token"))
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// introspect looks raw up for client c. The kind comes from its prefix;
// token_type_hint is not needed (RFC 7662 §2.1 lets the server ignore it).
//
// RFC 7662 §4: a client sees its own tokens; access tokens of other clients
// only with the introspect flag (a resource server); refresh tokens only
// ever their own client. Anything else is answered like an unknown token,
// so the endpoint does not tell which tokens exist.
func (s *Server) introspect(r *http.Request, c *client, raw string) (*introspection, *oauthError) {
	kind, key, ok, oerr := s.tokenKey(r, raw)
	if oerr != nil {
		return nil, oerr
	}
	if !ok {
		return &introspection{}, nil
	}
	tokenType := "Bearer"
	if kind == stores.RefreshToken {
		tokenType = "refresh_token"
	}
	ctx, cancel := s.storeCtx(r)
	t, err := s.tokens.LookupToken(ctx, kind, key)
	cancel()
	if s.storeFailed("lookup token", err) {
		return nil, errUnavailable
	}
	if err != nil || !s.now().Before(t.ExpiresAt) {
		// RFC 7662 §2.2: nothing more about an inactive token.
		return &introspection{}, nil
	}
	if t.ClientID != c.ID && (kind == stores.RefreshToken || !c.Introspect) {
		return &introspection{}, nil
	}
	// Like the guard: a token of a client no longer registered is dead, and
	// carries only the scopes its client is registered for now.
	owner := s.client(t.ClientID)
	if owner == nil {
		owner = s.documentStandIn(t.ClientID)
	}
	if owner == nil {
		return &introspection{}, nil
	}
	scope, ok := owner.currentScope(t.Scope)
	if !ok {
		return &introspection{}, nil
	}
	iss := s.issuerFor(r)
	aud := t.Audience
	if aud == nil && kind == stores.AccessToken {
		// A refresh token without one is not bound to resources (see
		// resource.go); an access token is for the default audience.
		aud = []string{s.defaultAudience(iss)}
	}
	var cnf *jwt.Confirmation
	if t.JKT != "" {
		cnf = &jwt.Confirmation{JKT: t.JKT}
		if kind == stores.AccessToken {
			tokenType = tokenTypeDPoP // RFC 9449 §6.2
		}
	}
	return &introspection{
		Confirmation: cnf,
		Active:       true,
		Scope:        scope,
		ClientID:     t.ClientID,
		Subject:      t.Subject,
		ExpiresAt:    t.ExpiresAt.Unix(),
		IssuedAt:     t.IssuedAt.Unix(),
		TokenType:    tokenType,
		Issuer:       iss,
		Audience:     aud,
	}, nil
}
