package issuer

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

const pkceS256 = "S256"

// authorizeParams are the authorization request parameters (RFC 6749
// §4.1.1, RFC 7636 §4.3) plus the consent form's own fields.
var authorizeParams = []string{"response_type", "scope", "state", "code_challenge", "code_challenge_method", "nonce", "dpop_jkt", csrfField, decisionField}

// authzRequest is an authorization request whose client and redirect URI
// have been validated, so that errors can be sent to the client.
type authzRequest struct {
	client *client
	// redirectURI is where the response goes; rawRedirectURI is the
	// redirect_uri parameter as given, "" when omitted.
	redirectURI    string
	rawRedirectURI string
	state          string
	params         url.Values
	// Filled by validateAuthorize, then the subject by serveAuthorize.
	scope         string
	codeChallenge string
	// dpopJKT binds the code to a DPoP key (RFC 9449 §10).
	dpopJKT string
	subject string
	// resources are the request's resource indicators (RFC 8707 §2.1),
	// nil for none.
	resources []string
	// oidc holds the OpenID Connect parameters when the granted scope
	// holds openid (see oidcparams.go), nil otherwise.
	oidc *oidcParams
}

// serveAuthorize is the authorization endpoint (RFC 6749 §3.1). GET carries
// the authorization request; POST is the submission of the consent form.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	params, ok := s.pageParams(w, r, "authorization endpoint", "authorization request", "consent form submission")
	if !ok {
		return
	}

	// RFC 6749 §4.1.2.1: without a valid client and redirect URI, tell the
	// resource owner and never redirect (open redirector, §10.15).
	name, ok := repeated(params, "client_id", "redirect_uri")
	if ok {
		s.errorPage(w, http.StatusBadRequest, "Invalid request", "The parameter "+name+" is repeated.")
		return
	}
	c, fetchErr := s.clientOrDocument(r.Context(), params.Get("client_id"))
	if fetchErr != nil {
		// A client ID metadata document that could not be used is the
		// client's error, shown to the resource owner (never redirected:
		// its redirect URIs are unknown).
		s.errorPage(w, http.StatusBadRequest, "Invalid client (invalid_client)",
			"The application's client ID metadata document could not be used: "+fetchErr.Error()+".")
		return
	}
	if c == nil {
		s.errorPage(w, http.StatusBadRequest, "Unknown client", "The application that sent you here is not registered with this server.")
		return
	}
	pushed := params.Has("request_uri")
	if pushed {
		// RFC 9126 §4: only the pushed parameters count.
		if params, ok = s.pushedParams(w, r, c, params); !ok {
			return
		}
	}
	req := &authzRequest{client: c, rawRedirectURI: params.Get("redirect_uri"), params: params}
	switch {
	case req.rawRedirectURI != "":
		// RFC 6749 §3.1.2.3: simple string comparison; RFC 8252 §7.3: any
		// port on a loopback IP.
		if !c.redirectAllowed(req.rawRedirectURI) {
			s.errorPage(w, http.StatusBadRequest, "Invalid redirect URI", "The redirect URI is not registered for this application.")
			return
		}
		req.redirectURI = req.rawRedirectURI
	case len(c.RedirectURIs) == 1:
		req.redirectURI = c.RedirectURIs[0]
	default:
		s.errorPage(w, http.StatusBadRequest, "Missing redirect URI", "The application has several redirect URIs registered and named none.")
		return
	}
	if len(params["state"]) == 1 {
		req.state = params.Get("state")
	}

	if !pushed && r.Method == http.MethodGet && (s.requirePAR || c.RequirePAR) {
		// RFC 9126 §5, §6. A consent form's POST comes from a page that a
		// pushed request rendered.
		s.redirectError(w, r, req, errInvalidRequest("authorization requests must be pushed to the pushed_authorization_request_endpoint (RFC 9126)"))
		return
	}
	if oerr := s.validateAuthorize(req); oerr != nil {
		s.redirectError(w, r, req, oerr)
		return
	}
	subject := s.subject(r)
	if oerr := s.checkPrompt(r, req, subject); oerr != nil {
		s.redirectError(w, r, req, oerr)
		return
	}
	if req.subject = subject; req.subject == "" {
		s.errorPage(w, http.StatusUnauthorized, "Not signed in",
			"No authenticated user reached the authorization endpoint. The server must run an authentication handler before oauth2_server on this route.")
		return
	}

	if r.Method == http.MethodPost {
		nonce, ok := s.checkCSRF(req, params.Get(csrfField))
		if !ok {
			s.errorPage(w, http.StatusForbidden, "Consent form expired",
				"The consent form was invalid or has expired. Go back to the application and start again.")
			return
		}
		// The form is single-use, whatever the decision: a second
		// submission (a double click, a replayed POST) gets no second code.
		if ok, oerr := s.consumeCSRF(r, nonce); oerr != nil {
			s.redirectError(w, r, req, oerr)
			return
		} else if !ok {
			s.errorPage(w, http.StatusForbidden, "Consent form already used",
				"This consent form has already been submitted. Go back to the application and start again.")
			return
		}
		if params.Get(decisionField) != decisionApprove {
			s.redirectError(w, r, req, &oauthError{Code: errCodeAccessDenied, Description: "the resource owner denied the request"})
			return
		}
		s.issueCode(w, r, req)
		return
	}
	// A client that registered itself never skips consent.
	if req.oidc.needsPage(c.SkipConsent && !c.dynamic()) {
		s.renderConsent(w, r, req)
		return
	}
	s.issueCode(w, r, req)
}

// validateAuthorize checks everything after client and redirect URI. Its
// errors are redirected to the client (RFC 6749 §4.1.2.1).
func (s *Server) validateAuthorize(req *authzRequest) *oauthError {
	p, c := req.params, req.client
	if name, ok := repeated(p, authorizeParams...); ok {
		return errInvalidRequest("parameter " + name + " repeated")
	}
	if name, ok := repeated(p, oidcParamNames...); ok {
		return errInvalidRequest("parameter " + name + " repeated")
	}
	if oerr := refuseRequestObjects(p); oerr != nil {
		return oerr
	}
	switch rt := p.Get("response_type"); rt {
	case "":
		return errInvalidRequest("response_type is required")
	case "code":
	default:
		return &oauthError{http.StatusBadRequest, errCodeUnsupportedResponseType, "only response_type=code is supported"}
	}
	if !c.grants[grantAuthorizationCode] {
		return errUnauthorizedClient("the client may not use the authorization code grant")
	}
	// RFC 7636 §4.3, §4.4.1: only S256; without a method the challenge
	// would be "plain", which is not supported.
	challenge, method := p.Get("code_challenge"), p.Get("code_challenge_method")
	switch {
	case challenge == "" && method != "":
		return errInvalidRequest("code_challenge_method without code_challenge")
	case challenge == "" && (c.Public() || s.requirePKCE):
		return errInvalidRequest("PKCE code_challenge is required")
	case challenge != "" && method != pkceS256:
		return errInvalidRequest("code_challenge_method must be S256")
	case challenge != "" && !validPKCEString(challenge):
		return errInvalidRequest("malformed code_challenge")
	}
	req.codeChallenge = challenge
	// RFC 9449 §10: dpop_jkt is a base64url SHA-256 thumbprint.
	if jkt := p.Get("dpop_jkt"); jkt != "" {
		if s.dpop == nil {
			return errInvalidRequest("dpop_jkt is not supported: DPoP is off")
		}
		if b, err := base64.RawURLEncoding.DecodeString(jkt); err != nil || len(b) != sha256.Size {
			return errInvalidRequest("malformed dpop_jkt")
		}
		req.dpopJKT = jkt
	}
	scope, oerr := c.grantScope(p.Get("scope"))
	if oerr != nil {
		return oerr
	}
	req.scope = scope
	// RFC 8707 §2.1: the resources the token will be for, checked as the
	// token endpoint checks them; the code is bound to them.
	if req.resources, oerr = s.requestedResources(c, p["resource"]); oerr != nil {
		return oerr
	}
	if s.openID(scope) {
		if req.oidc, oerr = parseOIDCParams(p, c.Public()); oerr != nil {
			return oerr
		}
	}
	return nil
}

// validPKCEString reports whether v is 43 to 128 characters of the
// unreserved set (RFC 7636 §4.1, §4.2).
func validPKCEString(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// issueCode stores a new authorization code and sends it to the client
// (RFC 6749 §4.1.2).
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, req *authzRequest) {
	raw, err := token.New(token.CodePrefix)
	if err != nil {
		s.redirectError(w, r, req, errUnavailable)
		return
	}
	now := s.now()
	code := &stores.Code{
		Key:         s.hasher.Key(raw),
		ClientID:    req.client.ID,
		Subject:     req.subject,
		RedirectURI: req.rawRedirectURI,
		Scope:       req.scope,
		Family:      token.NewID(),
		Audience:    req.resources,
		IssuedAt:    now,
		ExpiresAt:   now.Add(s.codeTTL),
		OIDC:        s.oidcGrant(r, req),
	}
	if req.codeChallenge != "" {
		code.CodeChallenge, code.CodeChallengeMethod = req.codeChallenge, pkceS256
	}
	if code.OIDC != nil {
		// The ID token's sid is the grant family, so that RP-initiated
		// logout (logout.go) revokes exactly this authorization's tokens.
		code.OIDC.SessionID = code.Family
	}
	code.JKT = req.dpopJKT
	ctx, cancel := s.storeCtx(r)
	err = s.codes.InsertCode(ctx, code)
	cancel()
	if err != nil {
		s.storeFailed("insert code", stores.Unavailable(err))
		s.redirectError(w, r, req, errUnavailable)
		return
	}
	if ce := s.log.Check(zapcore.InfoLevel, "issued authorization code"); ce != nil {
		ce.Write(zap.String("client_id", req.client.ID), zap.String("scope", req.scope), zap.String("family", code.Family))
	}
	s.redirect(w, r, req, url.Values{"code": {raw}})
}

// redirectError sends an error response to the client (RFC 6749 §4.1.2.1).
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, req *authzRequest, e *oauthError) {
	v := url.Values{"error": {e.Code}}
	if e.Description != "" {
		v.Set("error_description", e.Description)
	}
	s.redirect(w, r, req, v)
}

// pageParams reads the parameters of a request to an endpoint that answers
// with pages (authorization, logout): the query of a GET, the form of a
// POST. It writes the error page and reports false when it cannot.
func (s *Server) pageParams(w http.ResponseWriter, r *http.Request, endpoint, query, form string) (url.Values, bool) {
	switch r.Method {
	case http.MethodGet:
		params, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			s.errorPage(w, http.StatusBadRequest, "Malformed request", "The "+query+" could not be parsed.")
			return nil, false
		}
		return params, true
	case http.MethodPost:
		params, oerr := s.readForm(w, r)
		if oerr != nil {
			s.errorPage(w, oerr.Status, "Malformed request", "The "+form+" could not be read.")
			return nil, false
		}
		return params, true
	}
	w.Header().Set("Allow", "GET, POST")
	s.errorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "The "+endpoint+" accepts GET and POST only.")
	return nil, false
}

// redirect sends the resource owner back to the client with v plus state and
// iss (RFC 9207 §2). The redirect URI's own query is kept as it is (RFC 6749
// §3.1.2).
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, req *authzRequest, v url.Values) {
	if req.state != "" {
		v.Set("state", req.state)
	}
	v.Set("iss", s.issuerFor(r))
	u := req.redirectURI
	sep := "?"
	if i := strings.IndexByte(u, '?'); i >= 0 {
		sep = "&"
		if i == len(u)-1 {
			sep = ""
		}
	}
	u += sep + v.Encode()
	h := w.Header()
	h.Set("Location", u)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(redirectBody)))
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther // the browser must GET the client
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, redirectBody)
	if v.Has("code") {
		s.redactLocation(w, r, req.redirectURI+sep, v)
	}
}

// redirectBody is the body of the redirect. A body, rather than none, makes
// wrappers that hold the status line back until the first write (Caddy's
// encode handler) pass it on, so the flush in redactLocation reaches the
// connection.
const redirectBody = "Redirecting to the application.\n"

// redactLocation keeps the authorization code out of access logs, which log
// the response header map after the handler returns. Once the header is on
// the wire, the Location in the map is replaced by a copy whose code is
// REDACTED: net/http documents that changing the map after WriteHeader has
// no effect on the response sent (HTTP/1.1 and HTTP/2 copy it at
// WriteHeader; HTTP/3 serializes it at the flush below). If a wrapper says
// it buffers the response (Buffered() true, as Caddy's recorders do), the
// header has not been sent and the code is left alone, and Unredacted, if
// set, is told so it can keep the request out of the log.
func (s *Server) redactLocation(w http.ResponseWriter, r *http.Request, prefix string, v url.Values) {
	_ = http.NewResponseController(w).Flush()
	for ww := w; ww != nil; {
		if b, ok := ww.(interface{ Buffered() bool }); ok && b.Buffered() {
			if s.unredacted != nil {
				s.unredacted(r)
			}
			return
		}
		u, ok := ww.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		ww = u.Unwrap()
	}
	red := make(url.Values, len(v))
	for k, vs := range v {
		red[k] = vs
	}
	red.Set("code", "REDACTED")
	w.Header().Set("Location", prefix+red.Encode())
}
