package issuer

import "net/http"

// serveUserInfo is the UserInfo endpoint (OIDC Core §5.3).
func (s *Server) serveUserInfo(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not yet", http.StatusNotImplemented)
}
