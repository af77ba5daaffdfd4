package issuer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// OpenID Connect (OIDC Core 1.0) on top of the code flow: the ID token
// (idtoken.go), UserInfo (userinfo.go) and discovery (discovery.go). This
// file holds its configuration and the claims it releases.

// Subject types (OIDC Core §8).
const (
	SubjectPublic   = "public"
	SubjectPairwise = "pairwise"
)

// DefaultIDTokenLifetime is OIDC.IDTokenLifetime's default.
const DefaultIDTokenLifetime = time.Hour

// scopeOpenID marks an OpenID Connect request (OIDC Core §3.1.2.1).
const scopeOpenID = "openid"

// OIDC configures OpenID Connect. The zero value of each field takes its
// documented default.
type OIDC struct {
	// Ring signs ID tokens and serves its keys at JWKSPath; it must hold
	// an RS256 key (OpenID Connect Discovery §3). Required. It is usually
	// Config.JWT's ring, but is set with opaque access tokens too.
	Ring *jwt.Ring
	// Claims are the claims read at authorization time and released by
	// scopes. Default: none, the ID token carries only sub.
	Claims []Claim
	// AuthTime returns when the resource owner of an authorization request
	// authenticated, zero when the authentication handler does not say
	// (see auth_time_placeholder). Default: never known.
	AuthTime func(r *http.Request) time.Time
	// IDTokenLifetime bounds an ID token's life. Default: 1h.
	IDTokenLifetime time.Duration
	// SubjectType is SubjectPublic (sub is the user id) or SubjectPairwise
	// (an HMAC of the client's redirect host and the user id under
	// PairwiseKey, OIDC Core §8.1). Default: public.
	SubjectType string
	// PairwiseKey keys pairwise subjects; servers sharing clients must
	// share it. Required with SubjectPairwise.
	PairwiseKey []byte
}

// Claim is one claim read from the authorization request.
type Claim struct {
	// Name is the claim's name. Required.
	Name string
	// Scope is the scope that releases it. Default: the standard scope of
	// a standard claim (OIDC Core §5.4), else the claim's own name.
	Scope string
	// Value reads the claim for an authorization request; "" omits it, a
	// value with commas becomes a list. Required.
	Value func(r *http.Request) string
}

// standardClaimScopes are the scopes that release the standard claims
// (OIDC Core §5.4).
var standardClaimScopes = map[string]string{
	"name": "profile", "family_name": "profile", "given_name": "profile", "middle_name": "profile",
	"nickname": "profile", "preferred_username": "profile", "profile": "profile", "picture": "profile",
	"website": "profile", "gender": "profile", "birthdate": "profile", "zoneinfo": "profile",
	"locale": "profile", "updated_at": "profile",
	"email": "email", "email_verified": "email",
	"address":      "address",
	"phone_number": "phone", "phone_number_verified": "phone",
}

// ClaimScope returns the scope that releases a claim when none is named:
// its standard scope, else its own name.
func ClaimScope(name string) string {
	if sc, ok := standardClaimScopes[name]; ok {
		return sc
	}
	return name
}

// reservedClaims are the ID token's own claims, which no configured claim
// may shadow.
var reservedClaims = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp",
	"at_hash", "c_hash", "sid", "jti", "nbf", "scope", "client_id", "cnf"}

// oidcConfig is a validated OIDC.
type oidcConfig struct {
	OIDC
	// scopes are the scopes that release claims, sorted, with openid.
	scopes []string
}

func newOIDC(o *OIDC) (*oidcConfig, error) {
	if o == nil {
		return nil, nil
	}
	c := &oidcConfig{OIDC: *o}
	if c.Ring == nil {
		return nil, errors.New("issuer: OpenID Connect needs a key ring")
	}
	c.IDTokenLifetime = orDefault(c.IDTokenLifetime, DefaultIDTokenLifetime)
	switch c.SubjectType {
	case "":
		c.SubjectType = SubjectPublic
	case SubjectPublic:
	case SubjectPairwise:
		if len(c.PairwiseKey) == 0 {
			return nil, errors.New("issuer: pairwise subjects need a key")
		}
	default:
		return nil, fmt.Errorf("issuer: subject type %q: want public or pairwise", c.SubjectType)
	}
	c.scopes = []string{scopeOpenID}
	seen := map[string]bool{}
	c.Claims = slices.Clone(c.Claims)
	for i := range c.Claims {
		cl := &c.Claims[i]
		if cl.Name == "" || cl.Value == nil {
			return nil, errors.New("issuer: a claim needs a name and a value")
		}
		if slices.Contains(reservedClaims, cl.Name) {
			return nil, fmt.Errorf("issuer: claim %q is set by the server itself", cl.Name)
		}
		if seen[cl.Name] {
			return nil, fmt.Errorf("issuer: claim %q is given twice", cl.Name)
		}
		seen[cl.Name] = true
		if cl.Scope == "" {
			cl.Scope = ClaimScope(cl.Name)
		}
		if !validScopeToken(cl.Scope) {
			return nil, fmt.Errorf("issuer: claim %q: invalid scope %q", cl.Name, cl.Scope)
		}
		if !slices.Contains(c.scopes, cl.Scope) {
			c.scopes = append(c.scopes, cl.Scope)
		}
	}
	slices.Sort(c.scopes)
	return c, nil
}

// hasScope reports whether a space-separated scope holds sc.
func hasScope(scope, sc string) bool {
	for _, s := range strings.Fields(scope) {
		if s == sc {
			return true
		}
	}
	return false
}

// openID reports whether a granted scope makes the grant an OpenID Connect
// one.
func (s *Server) openID(scope string) bool {
	return s.oidc != nil && hasScope(scope, scopeOpenID)
}

// oidcGrant reads what an OpenID Connect authorization keeps with its
// code: the nonce, auth_time, a new session id and the claims the granted
// scope releases, read from the request now. Nil for other grants.
func (s *Server) oidcGrant(r *http.Request, req *authzRequest) *stores.OIDCGrant {
	if !s.openID(req.scope) {
		return nil
	}
	g := &stores.OIDCGrant{Nonce: req.params.Get("nonce"), SessionID: token.NewID()}
	if s.oidc.AuthTime != nil {
		g.AuthTime = s.oidc.AuthTime(r)
	}
	for _, cl := range s.oidc.Claims {
		if !hasScope(req.scope, cl.Scope) {
			continue
		}
		if v := claimValue(cl.Value(r)); v != nil {
			if g.Claims == nil {
				g.Claims = map[string]any{}
			}
			g.Claims[cl.Name] = v
		}
	}
	return g
}

// claimValue turns a placeholder's value into a claim: nil when empty, a
// list of strings when it has commas, else the string.
func claimValue(v string) any {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	if !strings.Contains(v, ",") {
		return v
	}
	var list []any
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			list = append(list, e)
		}
	}
	if len(list) == 0 {
		return nil
	}
	return list
}

// releasedClaims returns the stored claims a scope releases, converted
// where OIDC Core §5.1 types a standard claim: email_verified and
// phone_number_verified as booleans, updated_at as a number.
func (s *Server) releasedClaims(g *stores.OIDCGrant, scope string, into map[string]any) {
	if g == nil {
		return
	}
	for _, cl := range s.oidc.Claims {
		v, ok := g.Claims[cl.Name]
		if !ok || !hasScope(scope, cl.Scope) {
			continue
		}
		into[cl.Name] = typedClaim(cl.Name, v)
	}
}

func typedClaim(name string, v any) any {
	str, ok := v.(string)
	if !ok {
		return v
	}
	switch name {
	case "email_verified", "phone_number_verified":
		switch strings.ToLower(str) {
		case "true", "1", "yes":
			return true
		case "false", "0", "no":
			return false
		}
	case "updated_at":
		if t, ok := parseUnixOrRFC3339(str); ok {
			return t.Unix()
		}
	}
	return v
}

// ParseAuthTime reads an authentication time as an authentication handler
// gives it: Unix seconds or RFC 3339. ok is false for anything else.
func ParseAuthTime(v string) (time.Time, bool) { return parseUnixOrRFC3339(v) }

func parseUnixOrRFC3339(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, false
	}
	var n int64
	digits := true
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' || i > 18 {
			digits = false
			break
		}
		n = n*10 + int64(v[i]-'0')
	}
	if digits {
		return time.Unix(n, 0), true
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}

// subjectFor returns the sub of the ID token and UserInfo for a user and
// client: the user id, or with pairwise subjects the base64url
// HMAC-SHA256 of the client's sector (its first redirect URI's host, OIDC
// Core §8.1) and the user id, so that two clients cannot correlate users.
func (s *Server) subjectFor(c *client, user string) string {
	if s.oidc.SubjectType != SubjectPairwise {
		return user
	}
	m := hmac.New(sha256.New, s.oidc.PairwiseKey)
	m.Write([]byte(sectorOf(c)))
	m.Write([]byte{0})
	m.Write([]byte(user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sectorOf is a client's sector identifier: the host of its first
// redirect URI, or its client_id when it has none that parses.
func sectorOf(c *client) string {
	if len(c.RedirectURIs) > 0 {
		if u, err := url.Parse(c.RedirectURIs[0]); err == nil && u.Host != "" {
			return u.Hostname()
		}
	}
	return "client:" + c.ID
}
