package issuer

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
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
func (s *Server) requestedResources(c *client, resources []string) ([]string, *oauthError) {
	var aud []string
	for _, res := range resources {
		if !validResource(res) {
			return nil, errInvalidTarget("resource must be an absolute URI without a fragment")
		}
		if !s.allowsResource(c, res) {
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
func (s *Server) narrowAudience(c *client, granted, requested []string) (access, grant []string, oerr *oauthError) {
	if granted == nil {
		// An unbound grant: the request's resources, or the default audience.
		return requested, requested, nil
	}
	for _, res := range granted {
		if s.allowsResource(c, res) {
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

// Resources are the resource servers any client may name (RFC 8707) besides
// its own registered resources, with the names the consent page shows for
// them: the app's `resources` and every guard's `resource`. Guards add
// theirs while the configuration is provisioned, possibly after the
// authorization server was built, so the set is read at request time. It
// is safe for concurrent use.
type Resources struct {
	mu    sync.RWMutex
	names map[string]string // resource -> display name ("" for none)
}

// NewResources returns an empty set.
func NewResources() *Resources { return &Resources{names: map[string]string{}} }

// Add lets every client name res, shown as name on the consent page (""
// for the URI itself). A resource added twice keeps its first non-empty
// name.
func (rs *Resources) Add(res, name string) error {
	if !validResource(res) {
		return fmt.Errorf("resource %q must be an absolute URI without a fragment (RFC 8707 §2)", res)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if old, ok := rs.names[res]; !ok || old == "" {
		rs.names[res] = name
	}
	return nil
}

// Has reports whether res is one of the set; a nil set has none.
func (rs *Resources) Has(res string) bool {
	if rs == nil {
		return false
	}
	rs.mu.RLock()
	_, ok := rs.names[res]
	rs.mu.RUnlock()
	return ok
}

// Name is the display name of res, "" when it has none.
func (rs *Resources) Name(res string) string {
	if rs == nil {
		return ""
	}
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	return rs.names[res]
}

// allowsResource reports whether the client may name res: one of its
// registered resources or one any client may name.
func (s *Server) allowsResource(c *client, res string) bool {
	return slices.Contains(c.Resources, res) || s.resources.Has(res)
}
