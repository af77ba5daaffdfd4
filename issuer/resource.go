package issuer

import (
	"net/url"
	"slices"
	"strings"
)

// Resource indicators (RFC 8707).
//
// A token request's resource parameters name the APIs the access token is
// for. They hold the same for opaque and JWT access tokens: each must be an
// absolute URI registered for the client, else 400 invalid_target (§2).
// The granted audience is stored on the access token and on the refresh
// token; a token stored without one (nil) is for the default audience:
// the app's audience, or else the issuer identifier, which is what a JWT
// without a resource carries as "aud". Nothing is stored for the default,
// so tokens issued before audiences existed keep their meaning.
//
// The audience of a grant (a code bound to resources by its authorization
// request, a refresh token) may be narrowed by a later request but never
// widened (§2.2). A grant stored without an audience is not restricted to
// resources: its refresh may name any resource registered for the client,
// as a token request could.

// validResource follows RFC 8707 §2: an absolute URI without a fragment,
// and without spaces or control characters, which no URI has (RFC 3986 §2)
// and which would break the stores' space-separated lists.
func validResource(res string) bool {
	if res == "" || len(res) > 2048 || strings.ContainsFunc(res, func(r rune) bool { return r <= ' ' || r == 0x7f }) ||
		strings.Contains(res, "#") {
		return false
	}
	u, err := url.Parse(res)
	return err == nil && u.IsAbs()
}

// requestedResources returns the request's resource parameters, distinct,
// each checked as RFC 8707 §2 says; nil when there are none.
func requestedResources(c *client, resources []string) ([]string, *oauthError) {
	var aud []string
	for _, res := range resources {
		if !validResource(res) {
			return nil, errInvalidTarget("resource must be an absolute URI without a fragment")
		}
		if !slices.Contains(c.Resources, res) {
			return nil, errInvalidTarget("the resource is not registered for the client")
		}
		if !slices.Contains(aud, res) {
			aud = append(aud, res)
		}
	}
	return aud, nil
}

// narrowAudience returns the audience of an access token issued from a
// grant bound to granted (nil: not bound) for the requested resources
// (nil: none named), and the grant's audience as it stands now. The grant
// follows the client's registration: a resource dropped from it is no
// longer granted. RFC 8707 §2.2: a request may narrow the grant's audience
// but not widen it.
func narrowAudience(c *client, granted, requested []string) (access, grant []string, oerr *oauthError) {
	if granted == nil {
		// An unbound grant: the request's resources, or the default audience.
		return requested, requested, nil
	}
	for _, res := range granted {
		if slices.Contains(c.Resources, res) {
			grant = append(grant, res)
		}
	}
	if len(grant) == 0 {
		return nil, nil, errInvalidTarget("none of the granted resources is still registered for the client")
	}
	for _, res := range requested {
		if !slices.Contains(grant, res) {
			return nil, nil, errInvalidTarget("the resource exceeds the audience of the original grant")
		}
	}
	if requested == nil {
		return grant, grant, nil
	}
	return requested, grant, nil
}

// defaultAudience is the audience of a token stored without one.
func (s *Server) defaultAudience(iss string) string {
	if s.audience != "" {
		return s.audience
	}
	return iss
}
