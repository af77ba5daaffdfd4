package issuer

import (
	"net/http"
	"net/url"
)

// Observer is told what the endpoints did, for metrics. Its methods must be
// cheap and safe for concurrent use. Client IDs passed to it are always
// registered ones (or "" for a client the request named but which is not
// registered), so they make bounded metric labels.
type Observer interface {
	// TokenIssued reports a successful token endpoint response.
	TokenIssued(grantType, clientID string)
	// TokenError reports a token endpoint error response by its RFC 6749
	// error code.
	TokenError(code string)
	// ClientAuthFailed reports a failed client authentication at the token,
	// revocation or introspection endpoint.
	ClientAuthFailed(clientID string)
}

type nopObserver struct{}

func (nopObserver) TokenIssued(string, string) {}
func (nopObserver) TokenError(string)          {}
func (nopObserver) ClientAuthFailed(string)    {}

// claimedClient is the registered client a request names, through basic
// auth or the client_id parameter, or "".
func (s *Server) claimedClient(r *http.Request, form url.Values) string {
	id := form.Get("client_id")
	if raw, _, ok := r.BasicAuth(); ok {
		if u, err := url.QueryUnescape(raw); err == nil {
			id = u
		}
	}
	if _, ok := s.clients[id]; ok {
		return id
	}
	return ""
}
