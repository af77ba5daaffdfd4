// Package validator decides whether a request to a protected resource
// carries a valid bearer token with the required scopes (RFC 6750).
//
// It is the guard's hot path: one header read, one HMAC, one store lookup and
// a scope scan, with the challenge headers built once at construction.
package validator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/caddy-oauth2/dpop"
	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// Config is what a Validator needs.
type Config struct {
	// Tokens is where access tokens are looked up.
	Tokens stores.TokenStore
	// Hasher derives store keys from raw tokens.
	Hasher *token.Hasher
	// Realm names the protection space in challenges. Default: "api".
	Realm string
	// Scopes are all required of every token. Default: none.
	Scopes []string
	// Timeout bounds each store lookup. Default: 2s. Stores that implement
	// stores.InProcess get none.
	Timeout time.Duration
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// ClientScopes returns the scopes a client is registered for now, and
	// whether it is registered at all. When set, a token of a client that is
	// no longer registered is refused as invalid_token, and a required scope
	// its client is no longer registered for counts as missing, so that
	// tokens follow the client's current registration instead of living on
	// until they expire. It runs on every request: it must be cheap (a map
	// lookup) and safe for concurrent use. Default: nil, tokens are judged
	// on their own.
	ClientScopes func(clientID string) (scopes map[string]bool, ok bool)
	// Audience, when set, is asked whether an opaque access token of
	// Tokens is for this resource server, with the token's audience (RFC
	// 8707; nil for a token issued for the default audience); false refuses
	// it as invalid_token, as a JWT for another audience is (RFC 9068 §4).
	// It runs on every such request: it must be cheap and safe for
	// concurrent use. Default: nil, no audience is checked.
	Audience func(aud []string) bool
	// Resource, when set, is this resource server's identifier (RFC 9728
	// §2, RFC 8707): a token of any source passes only if its audience
	// holds it (a JWT's or an introspection answer's "aud", or the
	// audience an opaque token was issued for, which Audience checks).
	// Default: "", no such step.
	Resource string
	// ResourceMetadata, when set, is the URL of the protected resource
	// metadata document (RFC 9728 §5.1): every 401 challenge names it,
	// and 401 and 403 challenges name the required scopes. Default: "".
	ResourceMetadata string
	// Sources are the other kinds of bearer token accepted besides the
	// opaque access tokens of Tokens (our own JWTs, other authorization
	// servers' tokens), asked in order: the first that recognises a token
	// decides. Default: none.
	Sources []Source
	// DPoP, when set, accepts DPoP-bound tokens with "Authorization: DPoP"
	// and a proof (RFC 9449 §7.1), and refuses them as bearer tokens
	// (§7.2). Share it with the token endpoint. Default: nil, a token bound
	// to a key is refused whatever the scheme.
	DPoP *dpop.Verifier
	// RequestURL returns the URL the client used, the proof's htu. It is
	// called only for requests with the DPoP scheme. Default: the scheme of
	// the connection, the Host header and the request's path.
	RequestURL func(r *http.Request) *url.URL
	// RequireDPoP refuses tokens that are not bound to a DPoP key.
	// Default: false.
	RequireDPoP bool
}

// Source is a kind of bearer token the guard accepts besides the opaque
// access tokens of its store: JWTs it verifies locally, or the tokens of
// another authorization server. Implementations must be safe for
// concurrent use.
type Source interface {
	// Recognize reports, cheaply and without I/O, whether raw is one of
	// this source's tokens (a JWT with its issuer, say). The first source
	// that recognises a token decides it.
	Recognize(raw string) bool
	// Verify returns the live grant raw stands for. An error wrapping
	// ErrInvalidToken refuses the token with 401 invalid_token; any other
	// error is an outage of what the source depends on, answered with 503.
	// Verify need not check expiry or scopes: the validator does.
	Verify(ctx context.Context, raw string) (Grant, error)
}

// SelfTimed is a Source whose calls each carry their own deadline (an
// external issuer's timeout): the validator does not bound its Verify by
// Config.Timeout, the store's, so one slow server cannot spend it for all.
type SelfTimed interface {
	Source
	SelfTimed()
}

// Grant is what a valid token stands for.
type Grant struct {
	// Token holds the subject, client_id, scope and expiry. For tokens of
	// our store (opaque or JWT) Key and Family are set too.
	Token *stores.Token
	// Claims are a JWT's claims or an introspection response, passed on to
	// the upstream as {oauth2.claims.<name>}. Nil for opaque tokens of our
	// store.
	Claims map[string]any
	// Issuer is the other authorization server that vouched for a foreign
	// token, shared by all its grants. Nil for our own tokens.
	Issuer *ForeignIssuer
	// JKT is the thumbprint of the DPoP key the token is bound to (RFC
	// 9449 §6): cnf.jkt of a JWT or an introspection answer, the stored
	// binding of our opaque tokens. Empty for a bearer token.
	JKT string
}

// Foreign reports whether the token is another authorization server's: its
// client is not registered here, so Config.ClientScopes does not apply.
func (g Grant) Foreign() bool { return g.Issuer != nil }

// ForeignIssuer is another authorization server whose tokens are accepted.
type ForeignIssuer struct {
	// ID is its issuer identifier.
	ID string
	// SubjectPrefix is put before the subject (or client id) of its tokens
	// where the guard reports who the user is, so that its users cannot
	// pass for ours.
	SubjectPrefix string
}

// Validator checks bearer tokens. It is safe for concurrent use.
type Validator struct {
	tokens   stores.TokenStore
	hasher   *token.Hasher
	scopes   []string
	timeout  time.Duration
	now      func() time.Time
	clients  func(clientID string) (map[string]bool, bool)
	aud      func([]string) bool
	resource string
	sources  []Source

	dpop        *dpop.Verifier
	requestURL  func(r *http.Request) *url.URL
	requireDPoP bool

	// Precomputed WWW-Authenticate values; dpopChallenge is the DPoP
	// scheme's (§7.1), "" without DPoP.
	missing, malformed, invalid, insufficient string
	dpopChallenge                             string
	// denyBound refuses a bound token sent as a bearer token,
	// denyUnbound an unbound one where DPoP is required, denyNotBound an
	// unbound one sent with the DPoP scheme, which has no key to prove.
	denyBound, denyUnbound, denyNotBound *Denial
	// The common denials, built once: a flood of bad tokens allocates none.
	// Callers must not modify a Denial.
	denyMissing, denyMalformed, denyInvalid, denyScope *Denial
}

// Denial is a refusal: the status to answer and the WWW-Authenticate
// challenge to send with it (empty for 503).
type Denial struct {
	Status    int
	Challenge string
	// DPoPChallenge is a second WWW-Authenticate value, of the DPoP scheme
	// (RFC 9449 §7.1), when the validator accepts DPoP.
	DPoPChallenge string
	// DPoPNonce, when set, goes in a DPoP-Nonce header (§8, §9).
	DPoPNonce string
	// Err says why, for logs. It never contains the token.
	Err error
}

// Errors behind denials, for logs and tests.
var (
	ErrNoToken           = errors.New("no bearer token")
	ErrMalformedRequest  = errors.New("more than one Authorization header")
	ErrInvalidToken      = errors.New("token unknown, expired, revoked or malformed")
	ErrInsufficientScope = errors.New("token lacks a required scope")
	// ErrOverloaded is an outage by choice: a source refused to add one
	// more call to those under way (an introspection endpoint's cap). The
	// guard answers 503 with Retry-After.
	ErrOverloaded = errors.New("too many calls under way to an authorization server")
	// ErrBoundToken is a DPoP-bound token sent as a bearer token (RFC 9449
	// §7.2), ErrDPoPRequired an unbound one where DPoP is required.
	ErrBoundToken   = fmt.Errorf("%w: DPoP-bound, sent as a bearer token", ErrInvalidToken)
	ErrDPoPRequired = fmt.Errorf("%w: not bound to a DPoP key", ErrInvalidToken)
)

// New returns a Validator for cfg.
func New(cfg Config) (*Validator, error) {
	if cfg.Tokens == nil || cfg.Hasher == nil {
		return nil, errors.New("validator: Tokens and Hasher are required")
	}
	if cfg.Realm == "" {
		cfg.Realm = "api"
	}
	if strings.ContainsAny(cfg.Realm, "\"\\\r\n") {
		return nil, errors.New("validator: realm must not contain quotes, backslashes or line breaks")
	}
	for _, s := range cfg.Scopes {
		if !validScope(s) {
			return nil, errors.New("validator: invalid scope " + s)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if _, ok := cfg.Tokens.(stores.InProcess); ok {
		// Memory answers at once; a deadline would only cost a timer.
		cfg.Timeout = 0
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	realm := `Bearer realm="` + cfg.Realm + `"`
	v := &Validator{
		tokens:   cfg.Tokens,
		hasher:   cfg.Hasher,
		scopes:   cfg.Scopes,
		timeout:  cfg.Timeout,
		now:      cfg.Now,
		clients:  cfg.ClientScopes,
		aud:      cfg.Audience,
		resource: cfg.Resource,
		sources:  cfg.Sources,

		dpop:        cfg.DPoP,
		requestURL:  cfg.RequestURL,
		requireDPoP: cfg.RequireDPoP,
		// RFC 6750 §3.1: no error code when the request had no credentials.
		missing:   realm,
		malformed: realm + `, error="invalid_request", error_description="send exactly one Authorization header"`,
		invalid:   realm + `, error="invalid_token", error_description="the access token is unknown, expired or revoked"`,
	}
	v.insufficient = realm + `, error="insufficient_scope", scope="` + strings.Join(cfg.Scopes, " ") + `"`
	if m := cfg.ResourceMetadata; m != "" {
		if strings.ContainsAny(m, "\"\\\r\n") {
			return nil, errors.New("validator: the resource metadata URL must not contain quotes, backslashes or line breaks")
		}
		// RFC 9728 §5.1, and the scope a client should ask for (MCP
		// authorization, scope challenge).
		extra := `, resource_metadata="` + m + `"`
		if len(cfg.Scopes) > 0 {
			extra += `, scope="` + strings.Join(cfg.Scopes, " ") + `"`
		}
		v.missing += extra
		v.invalid += extra
		v.insufficient += `, resource_metadata="` + m + `"`
	}
	if v.dpop != nil {
		v.dpopChallenge = `DPoP realm="` + cfg.Realm + `", algs="` + strings.Join(v.dpop.Algorithms(), " ") + `"`
	}
	if v.requestURL == nil {
		v.requestURL = connectionURL
	}
	if v.requireDPoP && v.dpop == nil {
		return nil, errors.New("validator: RequireDPoP needs a DPoP verifier")
	}
	v.denyMissing = v.deny(http.StatusUnauthorized, v.missing, ErrNoToken)
	// RFC 6750 §3.1: invalid_request is answered with 400.
	v.denyMalformed = v.deny(http.StatusBadRequest, v.malformed, ErrMalformedRequest)
	v.denyInvalid = v.deny(http.StatusUnauthorized, v.invalid, ErrInvalidToken)
	v.denyScope = v.deny(http.StatusForbidden, v.insufficient, ErrInsufficientScope)
	// RFC 9449 §7.2: invalid_token for a bound token without its proof.
	v.denyBound = v.deny(http.StatusUnauthorized,
		realm+`, error="invalid_token", error_description="the access token is bound to a DPoP key: send it with the DPoP scheme and a proof"`, ErrBoundToken)
	v.denyUnbound = v.deny(http.StatusUnauthorized, realm, ErrDPoPRequired)
	v.denyNotBound = v.deny(http.StatusUnauthorized, v.invalid, ErrInvalidToken)
	if v.dpop != nil {
		v.denyNotBound.DPoPChallenge = v.dpopChallenge + `, error="invalid_token", error_description="the access token is not bound to a DPoP key"`
		v.denyUnbound.DPoPChallenge = v.dpopChallenge + `, error="invalid_token", error_description="this resource requires a DPoP-bound access token"`
	}
	return v, nil
}

// deny builds a refusal with the DPoP challenge beside the given one.
func (v *Validator) deny(status int, challenge string, err error) *Denial {
	return &Denial{Status: status, Challenge: challenge, DPoPChallenge: v.dpopChallenge, Err: err}
}

// Check returns the request's live access token, or why it is refused.
func (v *Validator) Check(r *http.Request) (*stores.Token, *Denial) {
	g, d := v.CheckGrant(r)
	return g.Token, d
}

// CheckGrant returns the grant of the request's live access token, or why
// it is refused. The Denial may be shared: callers must not modify it.
func (v *Validator) CheckGrant(r *http.Request) (Grant, *Denial) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return Grant{}, v.denyMissing
	}
	if len(values) > 1 {
		return Grant{}, v.denyMalformed
	}
	raw, ok := bearer(values[0])
	isDPoP := false
	if !ok {
		if v.dpop != nil {
			raw, isDPoP = dpopScheme(values[0])
		}
		if !isDPoP {
			// Another scheme (Basic, say) is no bearer credential at all.
			return Grant{}, v.denyMissing
		}
	}
	// The deadline timer is armed only for a token that reaches a lookup:
	// malformed and unrecognised tokens cost none.
	ctx := r.Context()
	var g Grant
	if token.WellFormed(token.AccessPrefix, raw) {
		ctx, cancel := v.bound(ctx)
		defer cancel()
		tok, err := v.tokens.LookupToken(ctx, stores.AccessToken, v.hasher.Key(raw))
		switch {
		case errors.Is(err, stores.ErrNotFound):
			return Grant{}, v.denyInvalid
		case err != nil:
			// A store that cannot answer never lets a request pass.
			return Grant{}, &Denial{Status: http.StatusServiceUnavailable, Err: err}
		}
		if v.aud != nil && !v.aud(tok.Audience) {
			return Grant{}, v.denyInvalid // a token for another API
		}
		g.Token, g.JKT = tok, tok.JKT
	} else if token.Ours(raw) {
		// A code, a refresh token or a garbled access token of ours is
		// refused here: it never goes to another server (an external
		// issuer's introspection endpoint would receive it).
		return Grant{}, v.denyInvalid
	} else {
		var src Source
		for _, s := range v.sources {
			if s.Recognize(raw) {
				src = s
				break
			}
		}
		if src == nil {
			return Grant{}, v.denyInvalid
		}
		if _, ok := src.(SelfTimed); !ok {
			var cancel context.CancelFunc
			ctx, cancel = v.bound(ctx)
			defer cancel()
		}
		var err error
		switch g, err = src.Verify(ctx, raw); {
		case errors.Is(err, ErrInvalidToken):
			return Grant{}, v.deny(http.StatusUnauthorized, v.invalid, err)
		case err != nil:
			return Grant{}, &Denial{Status: http.StatusServiceUnavailable, Err: err}
		case g.Token == nil:
			return Grant{}, v.denyInvalid
		}
		if v.resource != "" && !grantFor(g, v.resource) {
			return Grant{}, v.denyInvalid // a token for another API
		}
	}
	tok := g.Token
	if !v.now().Before(tok.ExpiresAt) {
		return Grant{}, v.denyInvalid
	}
	// The one sender-constraint step, whichever source decided; an unbound
	// bearer token costs these three comparisons.
	if isDPoP || g.JKT != "" || v.requireDPoP {
		if d := v.senderConstrained(r, raw, isDPoP, g.JKT); d != nil {
			return Grant{}, d
		}
	}
	var registered map[string]bool
	checkClient := v.clients != nil && !g.Foreign()
	if checkClient {
		var ok bool
		if registered, ok = v.clients(tok.ClientID); !ok {
			// The client was removed from the configuration.
			return Grant{}, v.denyInvalid
		}
	}
	for _, want := range v.scopes {
		if !HasScope(tok.Scope, want) || checkClient && !registered[want] {
			return Grant{}, v.denyScope
		}
	}
	return g, nil
}

// grantFor reports whether a source's grant is for the resource: its
// claims' "aud" (a JWT's, an introspection answer's) holds it, or, without
// claims, the audience its token was issued for does.
func grantFor(g Grant, resource string) bool {
	if g.Claims == nil {
		return slices.Contains(g.Token.Audience, resource)
	}
	switch aud := g.Claims["aud"].(type) {
	case string:
		return aud == resource
	case []string:
		return slices.Contains(aud, resource)
	case []any:
		for _, a := range aud {
			if a == resource {
				return true
			}
		}
	}
	return false
}

// senderConstrained checks a request's DPoP proof against the token (RFC
// 9449 §7.1) and refuses a bound token sent as a bearer token (§7.2).
func (v *Validator) senderConstrained(r *http.Request, raw string, isDPoP bool, jkt string) *Denial {
	switch {
	case !isDPoP && jkt != "":
		return v.denyBound
	case jkt == "" && v.requireDPoP:
		return v.denyUnbound
	case jkt == "":
		// RFC 9449 §7.1: the proof's key must be the one the token is
		// bound to; a token bound to none cannot be proven.
		return v.denyNotBound
	case v.dpop == nil:
		return v.denyInvalid // bound, but no DPoP here to prove it
	}
	proof, err := dpop.Header(r.Header)
	if err == nil && proof == "" {
		err = &dpop.Error{Code: dpop.CodeInvalidProof, Reason: "missing", Description: "a DPoP proof is required with the DPoP scheme"}
	}
	if err != nil {
		v.dpop.Refused(err.(*dpop.Error).Reason)
		return v.proofDenial(err)
	}
	_, err = v.dpop.Verify(proof, dpop.Request{Method: r.Method, URL: v.requestURL(r), AccessToken: raw, JKT: jkt})
	if err != nil {
		return v.proofDenial(err)
	}
	return nil
}

// proofDenial answers a refused proof: 401 with the DPoP challenge
// carrying the error (§7.1), and a fresh nonce for use_dpop_nonce (§9).
func (v *Validator) proofDenial(err error) *Denial {
	e, _ := err.(*dpop.Error)
	if e == nil {
		e = &dpop.Error{Code: dpop.CodeInvalidProof, Description: "invalid DPoP proof"}
	}
	d := &Denial{Status: http.StatusUnauthorized, Challenge: v.missing, Err: err,
		DPoPChallenge: v.dpopChallenge + e.ChallengeParams()}
	if e.Code == dpop.CodeUseNonce {
		d.DPoPNonce = v.dpop.CurrentNonce()
	}
	return d
}

// connectionURL is the URL of a request as the connection tells it, with
// no proxy trusted: the default of Config.RequestURL.
func connectionURL(r *http.Request) *url.URL {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath}
}

// dpopScheme extracts the token from an "Authorization: DPoP" value (RFC
// 9449 §7.1).
func dpopScheme(h string) (string, bool) {
	const scheme = "dpop "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(h[len(scheme):]), true
}

// bound gives ctx the lookup deadline, if the validator has one.
func (v *Validator) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if v.timeout <= 0 {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, v.timeout)
}

func noCancel() {}

// bearer extracts the token from an Authorization header value. The scheme
// is case-insensitive (RFC 9110 §11.1).
func bearer(h string) (string, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(h[len(scheme):]), true
}

// HasScope reports whether the space-separated scope list contains want,
// without allocating.
func HasScope(list, want string) bool {
	for len(list) > 0 {
		i := strings.IndexByte(list, ' ')
		if i < 0 {
			return list == want
		}
		if list[:i] == want {
			return true
		}
		list = list[i+1:]
	}
	return false
}

// validScope follows RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}
