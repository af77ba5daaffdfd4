package issuer

import "net/http"

// serveDiscovery serves the OpenID Provider metadata (OpenID Connect
// Discovery §4).
func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not yet", http.StatusNotImplemented)
}
