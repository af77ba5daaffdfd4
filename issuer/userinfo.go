package issuer

import (
	"net/http"
	"strings"

	"github.com/tokengate/caddy-oauth2/dpop"
	"github.com/tokengate/caddy-oauth2/stores"
)

// serveUserInfo is the UserInfo endpoint (OIDC Core §5.3): GET or POST
// with an access token of ours, opaque or JWT, whose grant has the openid
// scope; it answers the subject and the claims the token's scope
// releases. Errors are RFC 6750 §3 challenges.
func (s *Server) serveUserInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodGet, http.MethodPost)
		return
	}
	raw, scheme, ok := s.userInfoToken(w, r)
	if !ok {
		return
	}
	if scheme == "DPoP" && s.dpop == nil {
		bearerChallenge(w, http.StatusUnauthorized, "invalid_request", "DPoP is not supported here")
		return
	}
	kind, key, ok, oerr := s.tokenKey(r, raw)
	if oerr != nil {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, oerr.Status, oerr)
		return
	}
	if !ok || kind != stores.AccessToken {
		bearerChallenge(w, http.StatusUnauthorized, "invalid_token", "the access token is not valid")
		return
	}
	ctx, cancel := s.storeCtx(r)
	t, err := s.tokens.LookupToken(ctx, stores.AccessToken, key)
	cancel()
	if s.storeFailed("lookup token", err) {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, errUnavailable.Status, errUnavailable)
		return
	}
	if err != nil || !s.now().Before(t.ExpiresAt) {
		bearerChallenge(w, http.StatusUnauthorized, "invalid_token", "the access token is not valid")
		return
	}
	switch {
	case scheme == "Bearer" && t.JKT != "":
		// RFC 9449 §7.2: a DPoP-bound token is never accepted as a bearer one.
		bearerChallenge(w, http.StatusUnauthorized, "invalid_token", "the access token is bound to a DPoP key")
		return
	case scheme == "DPoP" && t.JKT == "":
		bearerChallenge(w, http.StatusUnauthorized, "invalid_token", "the access token is not bound to a DPoP key")
		return
	case scheme == "DPoP":
		// RFC 9449 §7.1: a fresh proof of the token's key for this request.
		if !s.userInfoProof(w, r, raw, t.JKT) {
			return
		}
	}
	// Like the guard: a token of a client no longer registered is dead,
	// and carries only the scopes its client is registered for now.
	owner := s.client(t.ClientID)
	if owner == nil {
		bearerChallenge(w, http.StatusUnauthorized, "invalid_token", "the access token is not valid")
		return
	}
	scope, ok := owner.currentScope(t.Scope)
	if !ok || t.Subject == "" || !hasScope(scope, scopeOpenID) {
		bearerChallenge(w, http.StatusForbidden, "insufficient_scope", "the access token was not granted the openid scope")
		return
	}
	claims := map[string]any{}
	s.releasedClaims(t.OIDC, scope, claims)
	claims["sub"] = s.subjectFor(owner, t.Subject) // OIDC Core §5.3.2
	writeJSON(w, http.StatusOK, claims)
}

// userInfoProof checks the DPoP proof of a UserInfo request made with a
// bound token, as the guard does (RFC 9449 §7.1): key, htm, htu, ath and
// jti. It answers a refused proof with the DPoP challenge and reports
// whether the request may go on.
func (s *Server) userInfoProof(w http.ResponseWriter, r *http.Request, raw, jkt string) bool {
	p, de := s.verifyProof(r, UserInfoPath, dpop.Request{Method: r.Method, AccessToken: raw, JKT: jkt})
	if p != nil {
		return true
	}
	if de == nil {
		de = &dpop.Error{Code: dpop.CodeInvalidProof, Reason: "missing", Description: "a DPoP proof is required with the DPoP scheme"}
	}
	if n := s.dpop.CurrentNonce(); n != "" && de.Code == dpop.CodeUseNonce {
		w.Header().Set("DPoP-Nonce", n)
	}
	w.Header().Set("WWW-Authenticate", `DPoP realm="userinfo", algs="`+strings.Join(s.dpop.Algorithms(), " ")+`"`+de.ChallengeParams())
	writeJSON(w, http.StatusUnauthorized, &oauthError{Status: http.StatusUnauthorized, Code: de.Code, Description: de.Description})
	return false
}

// userInfoToken reads the access token of a UserInfo request: from the
// Authorization header (RFC 6750 §2.1), or the access_token form field of
// a POST (§2.2), never both (§2). ok is false when the answer has been
// written.
func (s *Server) userInfoToken(w http.ResponseWriter, r *http.Request) (raw, scheme string, ok bool) {
	auth := r.Header.Values("Authorization")
	var fromForm string
	if r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		form, oerr := s.readForm(w, r)
		if oerr != nil {
			bearerChallenge(w, oerr.Status, "invalid_request", "the request body could not be read")
			return "", "", false
		}
		if len(form["access_token"]) > 1 {
			bearerChallenge(w, http.StatusBadRequest, "invalid_request", "access_token repeated")
			return "", "", false
		}
		fromForm = form.Get("access_token")
	}
	switch {
	case len(auth) == 0 && fromForm == "":
		// RFC 6750 §3.1: no error code when no token was sent.
		w.Header().Set("WWW-Authenticate", `Bearer realm="userinfo"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error_description": "an access token is required"})
		return "", "", false
	case len(auth) > 1 || len(auth) == 1 && fromForm != "":
		bearerChallenge(w, http.StatusBadRequest, "invalid_request", "more than one access token was sent")
		return "", "", false
	case fromForm != "":
		return fromForm, "Bearer", true
	}
	scheme, raw, found := strings.Cut(auth[0], " ")
	raw = strings.TrimSpace(raw)
	if !found || raw == "" {
		bearerChallenge(w, http.StatusBadRequest, "invalid_request", "malformed Authorization header")
		return "", "", false
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return raw, "Bearer", true
	case strings.EqualFold(scheme, "DPoP"):
		return raw, "DPoP", true
	}
	bearerChallenge(w, http.StatusUnauthorized, "invalid_request", "the Authorization scheme must be Bearer or DPoP")
	return "", "", false
}

// bearerChallenge answers an RFC 6750 §3 error: the challenge in
// WWW-Authenticate and the same error as JSON.
func bearerChallenge(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="userinfo", error="`+code+`", error_description="`+description+`"`)
	writeJSON(w, status, &oauthError{Status: status, Code: code, Description: description})
}
