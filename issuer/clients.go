package issuer

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokengate/caddy-oauth2/stores"
)

// Grant types (RFC 6749 §4).
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantClientCredentials = "client_credentials"
)

// Client is a registered OAuth 2.0 client (RFC 6749 §2).
type Client struct {
	// ID is the client identifier. Default: the key it is registered under
	// in Config.Clients; when set it must equal that key.
	ID string
	// SecretHash is the bcrypt hash of the client secret, as
	// `caddy hash-password` prints it. Default: nil, a public client.
	SecretHash []byte
	// RedirectURIs are the registered redirection URIs, compared exactly
	// (RFC 6749 §3.1.2), except that an http URI on a loopback IP literal
	// matches on any port (RFC 8252 §7.3). Each must be https, http on
	// 127.0.0.1 or [::1], or a reverse-DNS private-use scheme such as
	// com.example.app:/cb (see validRedirectURI). Required for the
	// authorization_code grant.
	RedirectURIs []string
	// GrantTypes is a subset of authorization_code, refresh_token and
	// client_credentials. Default: authorization_code and refresh_token,
	// plus client_credentials for confidential clients.
	GrantTypes []string
	// Scopes are the scopes the client may be granted; a request naming
	// none gets all of them. Default: none.
	Scopes []string
	// SkipConsent issues codes without asking the resource owner.
	// Default: false.
	SkipConsent bool
	// Introspect lets the client introspect access tokens issued to other
	// clients, as a resource server does (RFC 7662 §4). Without it a client
	// sees only its own tokens. Refresh tokens are only ever visible to
	// their own client. Default: false.
	Introspect bool
	// Name is shown on the consent page. Default: the ID.
	Name string
	// LogoURI is an https URL of a logo shown on the consent page.
	// Default: none.
	LogoURI string
	// Resources are the resource indicators (RFC 8707) the client may ask
	// tokens for: absolute URIs without a fragment, which become the "aud"
	// of its JWT access tokens. Default: none, every token gets the
	// server's default audience.
	Resources []string
	// PostLogoutRedirectURIs are where the logout endpoint may send the
	// user back after an RP-initiated logout (OpenID Connect RP-Initiated
	// Logout 1.0 §3.1), compared exactly; each follows the rules of a
	// redirect URI. Default: none, the logout endpoint shows its own page.
	PostLogoutRedirectURIs []string
	// IDTokenSignedResponseAlg is the algorithm of the client's ID tokens
	// (OpenID Connect Registration §2): RS256, ES256 or EdDSA, one the
	// server has a key for. Default: RS256.
	IDTokenSignedResponseAlg string
	// AuthMethod is the token endpoint authentication method (RFC 7591
	// §2): none, client_secret_basic, client_secret_post (the two secret
	// methods are both accepted) or private_key_jwt (RFC 7523 §2.2).
	// Default: client_secret_basic with a SecretHash, private_key_jwt with
	// JWKSURI or JWKS, none otherwise.
	AuthMethod string
	// JWKSURI is the https URL of the client's public keys (RFC 7517), which
	// verify its private_key_jwt assertions; fetched with the hardened
	// fetcher, cached, and fetched again for an unknown kid at most every
	// 10s. Default: none.
	JWKSURI string
	// JWKS is the client's public key set as a JWK Set JSON document, for
	// private_key_jwt; exclusive with JWKSURI. Default: none.
	JWKS []byte
	// RequirePAR makes the client send every authorization request through
	// the pushed authorization request endpoint (RFC 9126 §6). Default:
	// false.
	RequirePAR bool
	// DPoPBoundAccessTokens makes the token endpoint refuse this client's
	// requests without a DPoP proof (RFC 9449 §5.2). Default: false, a
	// proof is optional.
	DPoPBoundAccessTokens bool
}

// Public reports whether the client has no credentials: no secret and no
// keys (RFC 6749 §2.1).
func (c *Client) Public() bool {
	return len(c.SecretHash) == 0 && !c.keyAuth()
}

// keyAuth reports whether the client authenticates with private_key_jwt.
func (c *Client) keyAuth() bool {
	return c.AuthMethod == AuthMethodPrivateKeyJWT || c.JWKSURI != "" || len(c.JWKS) > 0
}

// client is a validated Client with lookup sets.
type client struct {
	Client
	grants    map[string]bool
	scopes    map[string]bool
	redirects map[string]bool
	// loopback holds the registered loopback redirect URIs without their
	// port, see loopbackKey.
	loopback map[string]bool
	// keys are the parsed JWKS of a private_key_jwt client; nil with a
	// JWKSURI, whose keys are fetched.
	keys []jose.JSONWebKey

	// Of a client registered at runtime (see Registry), nil or zero for a
	// configured one: its stored record, the secret replaced by the last
	// rotation and until when it is accepted, and when it lapses.
	rec       *stores.RegisteredClient
	prevHash  []byte
	prevUntil time.Time
	expires   time.Time
	// document is set for a client described by its client ID metadata
	// document (see cimd.go), kept for ttl.
	document bool
	ttl      time.Duration
}

// dynamic reports whether the client registered itself (RFC 7591): its
// name and logo are self-asserted.
func (c *client) dynamic() bool {
	return c.rec != nil && c.rec.RegisteredBy == stores.RegisteredDynamically
}

// MetadataError is a client registration that breaks a rule, as RFC 7591
// §3.2.2 reports it: Code is invalid_redirect_uri or
// invalid_client_metadata, Field the metadata field at fault.
type MetadataError struct {
	Code  string
	Field string
	Err   error
}

func (e *MetadataError) Error() string { return e.Err.Error() }
func (e *MetadataError) Unwrap() error { return e.Err }

// RFC 7591 §3.2.2 error codes.
const (
	ErrCodeInvalidRedirectURI    = "invalid_redirect_uri"
	ErrCodeInvalidClientMetadata = "invalid_client_metadata"
)

// badField is a MetadataError of invalid_client_metadata.
func badField(field string, err error) *MetadataError {
	return &MetadataError{Code: ErrCodeInvalidClientMetadata, Field: field, Err: err}
}

// DefaultGrantTypes are the grants of a client that names none:
// authorization_code and refresh_token, plus client_credentials for a
// confidential client (RFC 6749 §4.4).
func DefaultGrantTypes(public bool) []string {
	if public {
		return []string{grantAuthorizationCode, grantRefreshToken}
	}
	return []string{grantAuthorizationCode, grantRefreshToken, grantClientCredentials}
}

// ValidateClient checks a client as New does, so that a configuration
// adapter can report a mistake where it is written.
func ValidateClient(c *Client) error {
	_, err := newClient(c.ID, c)
	return err
}

func newClient(id string, c *Client) (*client, error) {
	if c == nil {
		return nil, errors.New("nil client")
	}
	if id == "" {
		return nil, errors.New("empty client ID")
	}
	if c.ID != "" && c.ID != id {
		return nil, fmt.Errorf("ID %q differs from its key", c.ID)
	}
	cl := &client{
		Client: Client{
			ID:           id,
			SecretHash:   slices.Clone(c.SecretHash),
			RedirectURIs: slices.Clone(c.RedirectURIs),
			Scopes:       slices.Clone(c.Scopes),
			SkipConsent:  c.SkipConsent,
			Introspect:   c.Introspect,
			Name:         c.Name,
			LogoURI:      c.LogoURI,
			Resources:    slices.Clone(c.Resources),

			PostLogoutRedirectURIs:   slices.Clone(c.PostLogoutRedirectURIs),
			IDTokenSignedResponseAlg: c.IDTokenSignedResponseAlg,
			AuthMethod:               c.AuthMethod,
			JWKSURI:                  c.JWKSURI,
			JWKS:                     slices.Clone(c.JWKS),
			RequirePAR:               c.RequirePAR,

			DPoPBoundAccessTokens: c.DPoPBoundAccessTokens,
		},
		grants:    map[string]bool{},
		scopes:    map[string]bool{},
		redirects: map[string]bool{},
		loopback:  map[string]bool{},
	}
	switch cl.IDTokenSignedResponseAlg {
	case "", "RS256", "ES256", "EdDSA":
	default:
		return nil, badField("id_token_signed_response_alg",
			fmt.Errorf("id_token_signed_response_alg %q: want RS256, ES256 or EdDSA", cl.IDTokenSignedResponseAlg))
	}
	for _, res := range cl.Resources {
		if !validResource(res) {
			return nil, badField("resources", fmt.Errorf("resource %q must be an absolute URI without a fragment (RFC 8707 §2)", res))
		}
	}
	if err := cl.checkAuthMethod(); err != nil {
		return nil, err
	}
	if len(cl.SecretHash) > 0 {
		if _, err := bcrypt.Cost(cl.SecretHash); err != nil {
			return nil, badField("client_secret", fmt.Errorf("secret hash is not a bcrypt hash: %w", err))
		}
	}
	cl.GrantTypes = slices.Clone(c.GrantTypes)
	if len(cl.GrantTypes) == 0 {
		cl.GrantTypes = DefaultGrantTypes(cl.Public())
	}
	for _, g := range cl.GrantTypes {
		switch g {
		case grantAuthorizationCode, grantRefreshToken:
		case grantClientCredentials:
			// RFC 6749 §4.4: only confidential clients.
			if cl.Public() {
				return nil, badField("grant_types", errors.New("a public client cannot use client_credentials"))
			}
		default:
			return nil, badField("grant_types", fmt.Errorf("unsupported grant type %q", g))
		}
		cl.grants[g] = true
	}
	for _, sc := range cl.Scopes {
		if !validScopeToken(sc) {
			return nil, badField("scope", fmt.Errorf("invalid scope %q", sc))
		}
		if cl.scopes[sc] {
			return nil, badField("scope", fmt.Errorf("duplicate scope %q", sc))
		}
		cl.scopes[sc] = true
	}
	for _, ru := range cl.RedirectURIs {
		if err := validRedirectURI(ru); err != nil {
			return nil, &MetadataError{Code: ErrCodeInvalidRedirectURI, Field: "redirect_uris", Err: fmt.Errorf("redirect URI %q: %w", ru, err)}
		}
		cl.redirects[ru] = true
		if k, ok := loopbackKey(ru); ok {
			cl.loopback[k] = true
		}
	}
	for _, u := range cl.PostLogoutRedirectURIs {
		if err := validRedirectURI(u); err != nil {
			return nil, badField("post_logout_redirect_uris", fmt.Errorf("post-logout redirect URI %q: %w", u, err))
		}
	}
	if cl.Public() && cl.Introspect {
		// RFC 7662 §2.1: a public client's ID proves nothing.
		return nil, badField("introspect", errors.New("a public client cannot introspect"))
	}
	if cl.LogoURI != "" {
		if u, err := url.Parse(cl.LogoURI); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			return nil, badField("logo_uri", fmt.Errorf("logo URI %q must be an https URL", cl.LogoURI))
		}
	}
	if cl.Public() && len(cl.RedirectURIs) == 0 {
		return nil, &MetadataError{Code: ErrCodeInvalidRedirectURI, Field: "redirect_uris", Err: errors.New("a public client needs at least one redirect URI")}
	}
	if cl.grants[grantAuthorizationCode] && len(cl.RedirectURIs) == 0 {
		return nil, &MetadataError{Code: ErrCodeInvalidRedirectURI, Field: "redirect_uris", Err: errors.New("the authorization_code grant needs at least one redirect URI")}
	}
	return cl, nil
}

// checkAuthMethod settles the client's authentication method and checks
// that its credentials fit it, parsing an inline JWKS.
func (cl *client) checkAuthMethod() error {
	secret, keys := len(cl.SecretHash) > 0, cl.JWKSURI != "" || len(cl.JWKS) > 0
	if cl.AuthMethod == "" {
		switch {
		case keys:
			cl.AuthMethod = AuthMethodPrivateKeyJWT
		case secret:
			cl.AuthMethod = AuthMethodBasic
		default:
			cl.AuthMethod = AuthMethodNone
		}
	}
	switch cl.AuthMethod {
	case AuthMethodNone:
		if secret || keys {
			return badField("token_endpoint_auth_method", errors.New("a client with token_endpoint_auth_method none has neither a secret nor keys"))
		}
	case AuthMethodBasic, AuthMethodPost:
		if !secret {
			return badField("token_endpoint_auth_method", fmt.Errorf("token_endpoint_auth_method %s needs a secret", cl.AuthMethod))
		}
		if keys {
			return badField("jwks", errors.New("a client authenticating with a secret has no jwks or jwks_uri"))
		}
	case AuthMethodPrivateKeyJWT:
		if secret {
			return badField("client_secret", errors.New("a private_key_jwt client has no secret: it authenticates with its keys"))
		}
		if cl.JWKSURI != "" && len(cl.JWKS) > 0 {
			return badField("jwks", errors.New("jwks and jwks_uri are exclusive (RFC 7591 §2)"))
		}
		if cl.JWKSURI == "" && len(cl.JWKS) == 0 {
			return badField("jwks_uri", errors.New("a private_key_jwt client needs jwks_uri or jwks"))
		}
		if cl.JWKSURI != "" {
			if err := validJWKSURI(cl.JWKSURI); err != nil {
				return badField("jwks_uri", err)
			}
		} else {
			keys, err := parseClientJWKS(cl.JWKS)
			if err != nil {
				return badField("jwks", err)
			}
			cl.keys = keys
		}
	default:
		return badField("token_endpoint_auth_method", fmt.Errorf("token_endpoint_auth_method %q is not supported: use none, client_secret_basic, client_secret_post or private_key_jwt", cl.AuthMethod))
	}
	return nil
}

// validRedirectURI applies the registration rules of RFC 9700 §2.1 and
// §4.1 and RFC 8252 §7: an absolute URI without fragment (RFC 6749
// §3.1.2), userinfo or wildcard, whose scheme is https, http on a loopback
// IP literal, or a private-use scheme in reverse-DNS form.
func validRedirectURI(ru string) error {
	u, err := url.Parse(ru)
	if err != nil {
		return err
	}
	switch {
	case !u.IsAbs():
		return errors.New("must be absolute")
	case u.Fragment != "" || u.RawFragment != "" || strings.Contains(ru, "#"):
		return errors.New("must have no fragment")
	case strings.Contains(ru, "*"):
		return errors.New("must not contain a wildcard: redirect URIs are compared exactly")
	case u.User != nil:
		return errors.New("must not contain userinfo")
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return errors.New("https URI needs a host")
		}
	case "http":
		// RFC 8252 §7.3, §8.3: plain http only to a loopback IP literal;
		// "localhost" may resolve elsewhere.
		if _, ok := loopbackKey(ru); !ok {
			return errors.New("http is allowed only on the loopback IPs 127.0.0.1 and [::1] (not localhost); use https")
		}
	case "javascript", "data", "file", "vbscript", "blob", "about":
		return fmt.Errorf("scheme %q is not allowed", u.Scheme)
	default:
		// RFC 8252 §7.1: private-use schemes are reverse domain names.
		if !strings.Contains(u.Scheme, ".") {
			return fmt.Errorf("scheme %q is neither https, loopback http nor a reverse-DNS private-use scheme such as com.example.app", u.Scheme)
		}
	}
	return nil
}

// loopbackKey returns an http redirect URI on a loopback IP literal without
// its port, and whether it is one. Native apps listen on an ephemeral port,
// so any port matches a registered loopback URI; scheme, host, path and
// query still compare exactly (RFC 8252 §7.3).
func loopbackKey(ru string) (string, bool) {
	rest, ok := strings.CutPrefix(ru, "http://")
	if !ok {
		return "", false
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host, tail := rest[:end], rest[end:]
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		port := host[i+1:]
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] < '1' || port[0] > '9' {
			return "", false
		}
		host = host[:i]
	}
	if host != "127.0.0.1" && host != "[::1]" || strings.Contains(tail, "#") {
		return "", false
	}
	return "http://" + host + tail, true
}

// redirectAllowed reports whether ru, the redirect_uri of an authorization
// request, is registered for the client: exactly, or for a loopback URI on
// any port.
func (c *client) redirectAllowed(ru string) bool {
	if c.redirects[ru] {
		return true
	}
	k, ok := loopbackKey(ru)
	return ok && c.loopback[k]
}

// validScopeToken reports whether s is a scope-token (RFC 6749 §3.3).
func validScopeToken(s string) bool {
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

// authenticateClient identifies and authenticates the client of a token,
// revocation or introspection request (RFC 6749 §2.3, §3.2.1). Confidential
// clients must present their secret; public clients present only their ID.
func (s *Server) authenticateClient(w http.ResponseWriter, r *http.Request, form url.Values) (*client, *oauthError) {
	if form.Has("client_assertion") || form.Has("client_assertion_type") {
		return s.authenticateAssertion(r, form) // RFC 7523 §2.2
	}
	var id, secret string
	switch h := r.Header.Values("Authorization"); len(h) {
	case 0: // client_secret_post, or client_id alone for a public client
		id, secret = form.Get("client_id"), form.Get("client_secret")
	case 1: // client_secret_basic
		rawID, rawSecret, ok := r.BasicAuth()
		if !ok {
			return nil, errInvalidClient("unsupported or malformed Authorization header")
		}
		// RFC 6749 §2.3.1: both are form-urlencoded before base64.
		var err1, err2 error
		id, err1 = url.QueryUnescape(rawID)
		secret, err2 = url.QueryUnescape(rawSecret)
		if err1 != nil || err2 != nil {
			return nil, errInvalidClient("malformed client credentials")
		}
		// RFC 6749 §2.3: one authentication method per request.
		if form.Get("client_secret") != "" {
			return nil, errInvalidRequest("more than one client authentication method")
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return nil, errInvalidRequest("client_id does not match the Authorization header")
		}
	default:
		return nil, errInvalidRequest("repeated Authorization header")
	}
	if id == "" {
		return nil, errInvalidClient("client authentication required")
	}
	c, derr := s.clientOrDocument(r.Context(), id)
	if derr != nil {
		return nil, errInvalidClient("the client ID metadata document could not be used: " + derr.Error())
	}
	if c != nil && c.AuthMethod == AuthMethodPrivateKeyJWT {
		return nil, errInvalidClient("the client authenticates with private_key_jwt (RFC 7523)")
	}
	if c != nil && s.fapi2 && !c.Public() {
		return nil, errInvalidClient("profile fapi2: confidential clients authenticate with private_key_jwt only")
	}
	if c != nil && c.Public() {
		// A public client has no secret; basic with an empty password is how
		// some libraries send a bare client ID.
		if secret != "" {
			return nil, errInvalidClient("client authentication failed")
		}
		return c, nil
	}
	if secret == "" {
		return nil, errInvalidClient("client authentication failed")
	}
	// An unknown ID goes through the same lockout and verification slot as
	// a known one and takes as long (burnBcrypt), so neither time nor
	// lockout tells whether it exists.
	idKey, addrKey := s.failureKeys(r, id)
	if oerr := s.checkLockout(w, idKey, addrKey); oerr != nil {
		return nil, oerr
	}
	ok, oerr := s.verifySecret(w, r, c, secret, idKey, addrKey)
	if oerr != nil {
		return nil, oerr
	}
	if !ok {
		s.recordFailure(id, idKey, addrKey)
		return nil, errInvalidClient("client authentication failed")
	}
	return c, nil
}

// verifySecret checks a confidential client's secret; c is nil for an
// unknown client ID. bcrypt on every request would cap issuance at a few
// dozen per core and second, so after a successful check the HMAC of the
// secret under a per-process key is kept for the client and compared first.
// The memo entry names the client version it was checked against (a
// runtime client is a new *client after every change), so a changed or
// rotated secret is never answered from the memo; one that matched the
// previous secret of a rotation stops matching when its grace ends. A
// mismatch falls back to bcrypt, so a wrong secret always pays the bcrypt
// cost, in one of the limiter's slots (see limiter.go); the error is 503 or
// 429 when no slot came free in time or the keys were locked while waiting.
func (s *Server) verifySecret(w http.ResponseWriter, r *http.Request, c *client, secret, idKey, addrKey string) (bool, *oauthError) {
	var sum [32]byte
	if c != nil {
		mac := hmac.New(sha256.New, s.memoKey)
		mac.Write([]byte(secret))
		mac.Sum(sum[:0])
		s.memoMu.RLock()
		known, ok := s.memo[c.ID]
		s.memoMu.RUnlock()
		if ok && known.c == c && subtle.ConstantTimeCompare(known.sum[:], sum[:]) == 1 &&
			(!known.prev || s.now().Before(c.prevUntil)) {
			return true, nil
		}
	}
	if !s.limits.acquire(r.Context()) {
		s.limits.busy.Add(1)
		return false, errBusy(w)
	}
	defer s.limits.release()
	// Requests that queued while their keys got locked are refused now.
	if oerr := s.checkLockout(w, idKey, addrKey); oerr != nil {
		return false, oerr
	}
	s.limits.verifications.Add(1)
	// bcrypt ignores bytes past the 72nd; such a secret would match any
	// secret with the same prefix.
	if c == nil || len(secret) > 72 {
		s.burnBcrypt(r.Context())
		return false, nil
	}
	start := time.Now()
	err := compareHash(c.SecretHash, []byte(secret))
	s.limits.noteCheck(time.Since(start))
	prev := false
	if err != nil && len(c.prevHash) > 0 && s.now().Before(c.prevUntil) {
		// The secret replaced by a rotation, during its grace period.
		prev, err = true, compareHash(c.prevHash, []byte(secret))
	}
	if err != nil {
		return false, nil
	}
	s.memoMu.Lock()
	if len(s.memo) >= maxMemo {
		clear(s.memo) // clients come and go at runtime: keep the memo bounded
	}
	s.memo[c.ID] = memoEntry{c: c, sum: sum, prev: prev}
	s.memoMu.Unlock()
	return true, nil
}

// memoEntry is a remembered successful secret check of a client version.
type memoEntry struct {
	c    *client
	sum  [32]byte
	prev bool
}

// maxMemo bounds the secret memo; past it the memo starts afresh.
const maxMemo = 200_000

// burnBcrypt takes as long as a bcrypt check of a registered client's
// secret, so failures do not reveal whether a client ID exists. It sleeps
// rather than computing: an unknown ID or an over-long secret cannot match,
// and only the time needs hiding, so a flood of made-up client IDs costs no
// CPU. The time is a running average of real checks, first measured on a
// dummy hash of the costliest registered cost.
func (s *Server) burnBcrypt(ctx context.Context) {
	s.dummyOnce.Do(func() {
		cost := bcrypt.MinCost
		for _, c := range s.clients {
			if n, err := bcrypt.Cost(c.SecretHash); err == nil && n > cost {
				cost = n
			}
		}
		s.dummy, _ = bcrypt.GenerateFromPassword([]byte("not a secret"), cost)
		if s.limits.checkNanos.Load() == 0 {
			start := time.Now()
			_ = compareHash(s.dummy, []byte("not the secret"))
			s.limits.noteCheck(time.Since(start))
		}
	})
	t := time.NewTimer(time.Duration(s.limits.checkNanos.Load()))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
