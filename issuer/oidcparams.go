package issuer

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Error codes of OpenID Connect Core 1.0 §3.1.2.6.
const (
	errCodeLoginRequired          = "login_required"
	errCodeConsentRequired        = "consent_required"
	errCodeRequestNotSupported    = "request_not_supported"
	errCodeRequestURINotSupported = "request_uri_not_supported"
)

// Bounds of the values kept with a consent form and a code.
const (
	maxNonceBytes     = 512
	maxLoginHintBytes = 512
)

// oidcParamNames are the OpenID Connect parameters of an authorization
// request (OpenID Connect Core 1.0 §3.1.2.1) that may appear once only.
var oidcParamNames = []string{"nonce", "prompt", "max_age", "login_hint", "request", "request_uri", "claims"}

// oidcParams are the OpenID Connect parameters of an authorization request
// whose granted scope holds openid.
type oidcParams struct {
	nonce     string
	loginHint string
	// The prompt values (§3.1.2.1); none excludes the others.
	// select_account is accepted and changes nothing: the authentication
	// handler in front decides who the user is, there is no account to
	// choose here.
	none, login, consent bool
	// maxAge is max_age in seconds, -1 when absent.
	maxAge int64
}

// refuseRequestObjects answers the parameters that pass the request by
// reference or by value (OpenID Connect Core §6, RFC 9101), which this
// server does not support, with §3.1.2.6's errors. A request_uri of RFC 9126
// (urn:ietf:params:oauth:request_uri:...) is a pushed authorization request,
// not a request object, and is left to the PAR endpoint's code. It applies
// to every authorization request, OpenID Connect or not: ignoring a signed
// request would act on parameters the client did not mean.
func refuseRequestObjects(p url.Values) *oauthError {
	if p.Has("request") {
		return &oauthError{http.StatusBadRequest, errCodeRequestNotSupported, "request objects (the request parameter) are not supported"}
	}
	if ru := p.Get("request_uri"); ru != "" && !strings.HasPrefix(ru, "urn:ietf:params:oauth:request_uri:") {
		return &oauthError{http.StatusBadRequest, errCodeRequestURINotSupported, "request_uri is supported only for pushed authorization requests (RFC 9126)"}
	}
	return nil
}

// parseOIDCParams reads the OpenID Connect parameters of a request whose
// granted scope holds openid. The claims parameter (§5.5) is ignored, as
// §3.1.2.1 has a server do with parameters it does not support: discovery
// says claims_parameter_supported false, and §5.5.1 has a server that cannot
// release a requested claim, essential or not, answer without it rather
// than with an error. The claims released are those of the granted scopes.
func parseOIDCParams(p url.Values, public bool) (*oidcParams, *oauthError) {
	o := &oidcParams{nonce: p.Get("nonce"), loginHint: p.Get("login_hint"), maxAge: -1}
	switch {
	case o.nonce == "" && public:
		// §3.1.2.1 makes nonce optional for the code flow; a public client
		// has no secret to tie the code to it, so, as for PKCE, this server
		// asks for the nonce that binds the ID token to the browser session.
		return nil, errInvalidRequest("nonce is required for a public client asking for openid")
	case len(o.nonce) > maxNonceBytes:
		return nil, errInvalidRequest("nonce is longer than 512 bytes")
	case len(o.loginHint) > maxLoginHintBytes:
		return nil, errInvalidRequest("login_hint is longer than 512 bytes")
	}
	if v, ok := p["prompt"]; ok {
		values := strings.Fields(v[0])
		if len(values) == 0 {
			return nil, errInvalidRequest("prompt is empty")
		}
		for _, pv := range values {
			switch pv {
			case "none":
				o.none = true
			case "login":
				o.login = true
			case "consent":
				o.consent = true
			case "select_account":
			default:
				// Values defined elsewhere (prompt=create) are not
				// supported; ignoring one would give the user something
				// other than what the client asked for.
				return nil, errInvalidRequest("unsupported prompt value")
			}
		}
		// §3.1.2.1: none with any other value is an error.
		if o.none && len(values) > 1 {
			return nil, errInvalidRequest("prompt=none cannot be combined with other values")
		}
	}
	if v, ok := p["max_age"]; ok {
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil || n < 0 || v[0] != strconv.FormatInt(n, 10) {
			return nil, errInvalidRequest("max_age must be a non-negative number of seconds")
		}
		o.maxAge = n
	}
	return o, nil
}

// loginFreshness is how recent an authentication must be to satisfy
// prompt=login: this server cannot make the authentication handler in front
// ask the user again, so it accepts an authentication that handler has just
// performed (the user was sent to its login and back) and refuses an older
// one with login_required.
const loginFreshness = time.Minute

// checkAuthentication decides whether the resource owner's authentication
// satisfies prompt=login and max_age (§3.1.2.1). authTime is when the
// authentication handler in front authenticated the user, zero when it does
// not say (no auth_time_placeholder, or an empty or unreadable value): then
// neither can be proven and the answer is login_required, never a silent
// pass.
func (o *oidcParams) checkAuthentication(authTime, now time.Time) *oauthError {
	if o.login && (authTime.IsZero() || now.Sub(authTime) > loginFreshness) {
		return &oauthError{http.StatusBadRequest, errCodeLoginRequired, "prompt=login needs a fresh authentication, which the authentication handler did not report"}
	}
	if o.maxAge >= 0 && (authTime.IsZero() || now.Sub(authTime) > time.Duration(o.maxAge)*time.Second+time.Second) {
		// One second of slack: auth_time has whole seconds.
		return &oauthError{http.StatusBadRequest, errCodeLoginRequired, "the authentication is older than max_age, or its time is unknown"}
	}
	return nil
}

// needsPage reports whether the consent page must be shown: always when
// the client asked for prompt=consent (§3.1.2.1), whatever skip_consent
// says; otherwise when the client does not skip consent.
func (o *oidcParams) needsPage(skip bool) bool {
	if o != nil && o.consent {
		return true
	}
	return !skip
}

// promptNoneError is the answer to prompt=none when the server would have
// to interact with the user (§3.1.2.6): no signed-in user, or a consent page
// to show. It is sent by redirect, never as a page.
func promptNoneError(signedIn, page bool) *oauthError {
	if !signedIn {
		return &oauthError{http.StatusBadRequest, errCodeLoginRequired, "prompt=none and no signed-in user"}
	}
	if page {
		return &oauthError{http.StatusBadRequest, errCodeConsentRequired, "prompt=none and the request needs the user's consent"}
	}
	return nil
}

// checkPrompt applies prompt and max_age to an OpenID Connect request when
// it arrives, before any page (§3.1.2.1): prompt=none gets login_required
// or consent_required by redirect where the server would have to show the
// user something; prompt=login and max_age need the authentication time the
// handler in front reports. They are not checked again when the consent
// form comes back: the user's time on that page is not a new
// authentication.
func (s *Server) checkPrompt(r *http.Request, req *authzRequest, subject string) *oauthError {
	o := req.oidc
	if o == nil || r.Method != http.MethodGet {
		return nil
	}
	if subject == "" {
		if o.none {
			return promptNoneError(false, false)
		}
		return nil // the not-signed-in page
	}
	var authTime time.Time
	if s.oidc.AuthTime != nil {
		authTime = s.oidc.AuthTime(r)
	}
	if oerr := o.checkAuthentication(authTime, s.now()); oerr != nil {
		return oerr
	}
	if o.none {
		c := req.client
		return promptNoneError(true, o.needsPage(c.SkipConsent && !c.dynamic()))
	}
	return nil
}

// loginHint is the request's login_hint for the consent page, "" for none.
func (req *authzRequest) loginHint() string {
	if req.oidc == nil {
		return ""
	}
	return req.oidc.loginHint
}
