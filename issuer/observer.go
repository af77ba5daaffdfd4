package issuer

import (
	"net/http"
	"net/url"
)

// Observer is told what the endpoints did, for metrics. Its methods must be
// cheap and safe for concurrent use. Client IDs passed to it are always
// configured ones, RegisteredClientLabel for a client registered at
// runtime, or "" for a client the request named but which is not
// registered, so they make bounded metric labels.
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

// ClientObserver, when an Observer (or RegistryConfig.Observer) also
// implements it, is told of changes to the clients registered at runtime
// and of refused registrations, for metrics.
type ClientObserver interface {
	// ClientChanged reports a client created, updated, rotated or deleted
	// through this gateway; registeredBy is stores.RegisteredByAdmin or
	// stores.RegisteredDynamically.
	ClientChanged(op, registeredBy string)
	// RegistrationRefused reports a refused request at the registration
	// endpoint, by its error code or rate_limited or max_clients.
	RegistrationRefused(reason string)
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
	return s.metricClient(id)
}

// metricClient is a client ID as a metric label: a configured client's
// own, RegisteredClientLabel for any client registered at runtime (there
// may be many thousands), "" for an unknown one.
func (s *Server) metricClient(id string) string {
	if _, ok := s.clients[id]; ok {
		return id
	}
	if s.registry != nil && s.registry.lookup(id) != nil {
		return RegisteredClientLabel
	}
	return ""
}

// RegisteredClientLabel stands for every client registered at runtime in
// metric labels.
const RegisteredClientLabel = "(registered)"

// AssertionObserver, when the Observer also implements it, is told of
// pushed authorization requests and replayed client assertions, for
// metrics.
type AssertionObserver interface {
	// PARRequest reports a request to the pushed authorization request
	// endpoint by outcome: created, or the RFC 6749 error code answered.
	PARRequest(outcome string)
	// AssertionReplayed reports a private_key_jwt assertion whose jti was
	// seen before, at this gateway or another sharing the code store.
	AssertionReplayed(clientID string)
}
