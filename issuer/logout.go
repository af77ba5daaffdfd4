package issuer

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tokengate/caddy-oauth2/jwt"
)

// LogoutPath is the end_session_endpoint of OpenID Connect RP-Initiated
// Logout 1.0, served with Config.OIDC.
const LogoutPath = "/oauth2/logout"

// logoutParams may each appear once (RP-Initiated Logout §2).
var logoutParams = []string{"id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales"}

// serveLogout is the end_session_endpoint (RP-Initiated Logout 1.0 §2,
// GET and POST). With an id_token_hint of ours it revokes the grant the ID
// token was issued for (its sid is the grant family: every code, access and
// refresh token of that one authorization), then sends the user to a
// post_logout_redirect_uri registered for the client, with state, or shows
// a signed-out page. Without a hint nothing is revoked: §6 warns that such
// requests let any site log a user out, so they only show the page or
// redirect. It never ends the sign-in of the authentication handler in
// front of this server, which keeps its own session.
//
// Errors are pages, never redirects: a redirect goes only to a URI this
// request proved registered for its client.
func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	params, ok := s.pageParams(w, r, "logout endpoint", "logout request", "logout request")
	if !ok {
		return
	}
	if name, ok := repeated(params, logoutParams...); ok {
		s.errorPage(w, http.StatusBadRequest, "Invalid request", "The parameter "+name+" is repeated.")
		return
	}
	clientID := params.Get("client_id")
	var family string
	if hint := params.Get("id_token_hint"); hint != "" {
		aud, sid, status, msg := s.checkIDTokenHint(r, hint)
		if status != 0 {
			s.errorPage(w, status, "Invalid logout request", msg)
			return
		}
		// §2: a client_id must be the ID token's audience.
		if clientID != "" && clientID != aud {
			s.errorPage(w, http.StatusBadRequest, "Invalid logout request", "The client_id is not the client the ID token was issued to.")
			return
		}
		clientID, family = aud, sid
	}
	var c *client
	if clientID != "" {
		if c = s.client(clientID); c == nil {
			s.errorPage(w, http.StatusBadRequest, "Unknown client", "The application that sent you here is not registered with this server.")
			return
		}
	}
	target := params.Get("post_logout_redirect_uri")
	if target != "" {
		// §3: only to a URI registered for the client the request names;
		// without an id_token_hint or client_id there is none to check.
		if c == nil {
			s.errorPage(w, http.StatusBadRequest, "Invalid logout request", "A post_logout_redirect_uri needs an id_token_hint or a client_id.")
			return
		}
		if !slices.Contains(c.PostLogoutRedirectURIs, target) {
			s.errorPage(w, http.StatusBadRequest, "Invalid logout request", "The post-logout redirect URI is not registered for this application.")
			return
		}
	}
	if family != "" {
		ctx, cancel := s.storeCtx(r)
		err := s.tokens.RevokeFamily(ctx, family, s.familyMarkerUntil())
		cancel()
		if s.storeFailed("revoke family at logout", err) {
			s.errorPage(w, http.StatusServiceUnavailable, "Try again later", "The sign-out could not be recorded. Try again in a moment.")
			return
		}
		if ce := s.log.Check(zapcore.InfoLevel, "logout revoked a grant"); ce != nil {
			ce.Write(zap.String("client_id", clientID), zap.String("family", family))
		}
	}
	if target == "" {
		name := "the application"
		if c != nil {
			name = c.Name
			if name == "" {
				name = c.ID
			}
		}
		s.writePage(w, http.StatusOK, "logout.html", logoutPage{ClientName: name, Revoked: family != ""})
		return
	}
	if st := params.Get("state"); st != "" {
		sep := "?"
		if strings.Contains(target, "?") {
			sep = "&"
		}
		target += sep + url.Values{"state": {st}}.Encode()
	}
	h := w.Header()
	h.Set("Location", target)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(redirectBody)))
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, redirectBody)
}

// logoutPage is what logout.html shows.
type logoutPage struct {
	ClientName string
	// Revoked says whether the application's grant was revoked.
	Revoked bool
}

// checkIDTokenHint verifies an id_token_hint (RP-Initiated Logout §2, §4):
// signed by our keys, issued by this issuer, for one client. An expired
// one is accepted, as §4 asks: the RP often holds nothing fresher when its
// user logs out. It returns the client and the session (the grant family),
// or an HTTP status and message for the page.
func (s *Server) checkIDTokenHint(r *http.Request, hint string) (aud, sid string, status int, msg string) {
	ctx, cancel := s.storeCtx(r)
	claims, err := s.oidc.Ring.VerifyIDToken(ctx, hint)
	cancel()
	switch {
	case errors.Is(err, jwt.ErrInvalid):
		return "", "", http.StatusBadRequest, "The id_token_hint is not an ID token issued by this server."
	case err != nil:
		s.storeFailed("verify id_token_hint", err)
		return "", "", http.StatusServiceUnavailable, "The signing keys are unavailable. Try again in a moment."
	}
	if iss, _ := claims["iss"].(string); iss != s.issuerFor(r) {
		return "", "", http.StatusBadRequest, "The id_token_hint was issued by another issuer."
	}
	switch a := claims["aud"].(type) {
	case string:
		aud = a
	case []any:
		if len(a) == 1 {
			aud, _ = a[0].(string)
		}
	}
	if azp, ok := claims["azp"].(string); ok && azp != aud {
		aud = ""
	}
	if aud == "" {
		return "", "", http.StatusBadRequest, "The id_token_hint names no single client."
	}
	sid, _ = claims["sid"].(string)
	return aud, sid, 0, ""
}
