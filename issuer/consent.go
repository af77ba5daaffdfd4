package issuer

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/binary"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// Consent form fields besides the authorization request parameters.
const (
	csrfField       = "csrf_token"
	decisionField   = "decision"
	decisionApprove = "approve"
	decisionDeny    = "deny"
)

// ConsentTemplateName is the template a site's own consent template file
// must define (or be, when it defines no templates of its own).
const ConsentTemplateName = "consent.html"

// consentTTL bounds how long a consent form may be submitted.
const consentTTL = 10 * time.Minute

//go:embed consent.html error.html logout.html
var templateFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "consent.html", "error.html", "logout.html"))

// field is a hidden form field.
type field struct{ Name, Value string }

// consentPage is what consent.html, or a site's own consent template,
// shows. The README documents these fields for template authors.
type consentPage struct {
	// ClientID is the client_id; ClientName its display name (the ID when
	// it has none); LogoURI its https logo, or "".
	ClientID   string
	ClientName string
	LogoURI    string
	// SelfRegistered is true for a client that registered itself (RFC
	// 7591): its name and logo are its own claims, not the operator's.
	SelfRegistered bool
	// MetadataDocument is true for a client whose ID is the URL of its
	// client ID metadata document; ClientHost is that URL's host, the
	// only thing about it the server can vouch for.
	MetadataDocument bool
	ClientHost       string
	// Resources are the APIs the token will be for (RFC 8707), with their
	// names where the configuration gives one; empty for the default.
	Resources []consentResource
	// Subject is the signed-in resource owner.
	Subject string
	// LoginHint is the OpenID Connect login_hint of the request (OIDC Core
	// §3.1.2.1), as the client sent it, "" for none: a hint of who the
	// client expected, which a template may show beside Subject.
	LoginHint string
	// Scopes are the requested scopes with their descriptions.
	Scopes []consentScope
	// RedirectURI is where the answer goes; RedirectHost its host.
	RedirectURI  string
	RedirectHost string
	// Fields are hidden inputs the form must post back unchanged, the CSRF
	// token among them.
	Fields []field
	// The submit buttons: name Decision, value Approve or Deny.
	Approve  string
	Deny     string
	Decision string
}

// consentResource is a requested resource and its display name ("" when
// none is configured).
type consentResource struct{ URI, Name string }

// consentScope is a requested scope and its human description ("" when
// none is configured).
type consentScope struct{ Name, Description string }

// errorPageData is what error.html shows.
type errorPageData struct {
	Status  int
	Title   string
	Message string
}

// renderConsent asks the resource owner to approve the request. The form
// posts the request parameters back with a CSRF token bound to them. It has
// no action: the browser posts to the URL it shows, whatever path rewriting
// the server did in front of this handler.
//
// The token is single-use: its nonce is recorded in the code store as a
// code keyed by the HMAC of the nonce, and submitting the form consumes it
// (see consumeCSRF). Gateways sharing a code store thereby accept each form
// exactly once between them.
func (s *Server) renderConsent(w http.ResponseWriter, r *http.Request, req *authzRequest) {
	now := s.now()
	nonce := token.NewID()
	ctx, cancel := s.storeCtx(r)
	err := s.codes.InsertCode(ctx, &stores.Code{
		Key:       s.csrfKeyOf(nonce),
		ClientID:  req.client.ID,
		Subject:   req.subject,
		Scope:     req.scope,
		IssuedAt:  now,
		ExpiresAt: now.Add(consentTTL + csrfSkew),
	})
	cancel()
	if err != nil {
		s.storeFailed("insert consent nonce", stores.Unavailable(err))
		s.redirectError(w, r, req, errUnavailable)
		return
	}
	page := consentPage{
		ClientID:   req.client.ID,
		ClientName: req.client.Name,
		LogoURI:    req.client.LogoURI,
		Subject:    req.subject,
		LoginHint:  req.loginHint(),

		SelfRegistered:   req.client.dynamic() || req.client.document,
		MetadataDocument: req.client.document,
		RedirectURI:      req.redirectURI,
		Approve:          decisionApprove,
		Deny:             decisionDeny,
		Decision:         decisionField,
	}
	if page.ClientName == "" {
		page.ClientName = req.client.ID
	}
	if u, err := url.Parse(req.redirectURI); err == nil {
		page.RedirectHost = u.Host
		if page.RedirectHost == "" { // a native app's private-use scheme
			page.RedirectHost = u.Scheme + ":"
		}
	}
	if req.client.document {
		if u, err := url.Parse(req.client.ID); err == nil {
			page.ClientHost = u.Host
		}
	}
	for _, res := range req.resources {
		page.Resources = append(page.Resources, consentResource{res, s.resources.Name(res)})
	}
	for _, sc := range strings.Fields(req.scope) {
		page.Scopes = append(page.Scopes, consentScope{sc, s.scopeDescriptions[sc]})
	}
	for _, name := range []string{"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method", "nonce", "dpop_jkt"} {
		if v := req.params.Get(name); v != "" {
			page.Fields = append(page.Fields, field{name, v})
		}
	}
	for _, res := range req.params["resource"] {
		page.Fields = append(page.Fields, field{"resource", res})
	}
	page.Fields = append(page.Fields, field{csrfField, s.csrfToken(req, now.Unix(), nonce)})
	s.writePage(w, http.StatusOK, "consent.html", page)
}

// errorPage tells the resource owner what went wrong, for errors that must
// not be redirected to the client.
func (s *Server) errorPage(w http.ResponseWriter, status int, title, message string) {
	s.writePage(w, status, "error.html", errorPageData{status, title, message})
}

// writePage renders an HTML page that may be neither cached nor framed
// (clickjacking, RFC 6749 §10.13).
func (s *Server) writePage(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	tmpl := pages
	if name == "consent.html" && s.consentTemplate != nil {
		tmpl = s.consentTemplate
	}
	if err := tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		s.log.Error("rendering page", zap.String("template", name), zap.Error(err))
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	// No script; a client's logo may come from any https origin. No
	// form-action: browsers apply it to the redirect that answers the form,
	// which goes to the client.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src https:; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// csrfSkew is how far in the future a CSRF token's issue time may lie, for
// gateways whose clocks differ a little.
const csrfSkew = time.Minute

// csrfToken binds a consent form to the resource owner, the request it
// shows (client, redirect URI, granted scope, state, PKCE challenge), the
// time it was issued and a single-use nonce:
// "<unix seconds>.<nonce>.<base64url HMAC>".
func (s *Server) csrfToken(req *authzRequest, issuedAt int64, nonce string) string {
	iat := strconv.FormatInt(issuedAt, 10)
	mac := hmac.New(sha256.New, s.csrfKey)
	fields := []string{"oauth2 consent v2", req.subject, req.client.ID, req.rawRedirectURI, req.scope, req.state, req.codeChallenge, req.dpopJKT, iat, nonce}
	if req.resources != nil {
		// The resources the form shows are bound too; a request without
		// any keeps the token of before they existed.
		fields = append(fields, strings.Join(req.resources, " "))
	}
	if n := req.params.Get("nonce"); n != "" {
		// The OpenID Connect nonce too; a form without one MACs as before.
		fields = append(fields, "nonce", n)
	}
	for _, f := range fields {
		// Length-prefixed, so no two field lists encode alike.
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		mac.Write(n[:])
		mac.Write([]byte(f))
	}
	return iat + "." + nonce + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// checkCSRF verifies a consent form's CSRF token in constant time and
// returns its nonce.
func (s *Server) checkCSRF(req *authzRequest, tok string) (nonce string, ok bool) {
	iatStr, rest, ok1 := strings.Cut(tok, ".")
	nonce, _, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || nonce == "" {
		return "", false
	}
	iat, err := strconv.ParseInt(iatStr, 10, 64)
	if err != nil {
		return "", false
	}
	now := s.now().Unix()
	if iat > now+int64(csrfSkew.Seconds()) || now-iat > int64(consentTTL.Seconds()) {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(s.csrfToken(req, iat, nonce)), []byte(tok)) != 1 {
		return "", false
	}
	return nonce, true
}

// consumeCSRF uses up a consent form's nonce. ok is false when the form
// was submitted before (or its record expired); oerr reports a store that
// could not answer.
func (s *Server) consumeCSRF(r *http.Request, nonce string) (ok bool, oerr *oauthError) {
	ctx, cancel := s.storeCtx(r)
	_, err := s.codes.ConsumeCode(ctx, s.csrfKeyOf(nonce))
	cancel()
	if s.storeFailed("consume consent nonce", err) {
		return false, errUnavailable
	}
	return err == nil, nil
}

// csrfKeyOf is the code-store key of a consent nonce. The "consent." prefix
// keeps it apart from codes, whose raw values always start with
// token.CodePrefix, so a nonce record can never be redeemed as a code.
func (s *Server) csrfKeyOf(nonce string) string {
	return s.hasher.Key("consent." + nonce)
}
