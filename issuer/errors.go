package issuer

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 7009 §2.2.1.
const (
	errCodeInvalidRequest          = "invalid_request"
	errCodeInvalidClient           = "invalid_client"
	errCodeInvalidGrant            = "invalid_grant"
	errCodeUnauthorizedClient      = "unauthorized_client"
	errCodeUnsupportedGrantType    = "unsupported_grant_type"
	errCodeInvalidScope            = "invalid_scope"
	errCodeAccessDenied            = "access_denied"
	errCodeUnsupportedResponseType = "unsupported_response_type"
	errCodeTemporarilyUnavailable  = "temporarily_unavailable"
	errCodeInvalidTarget           = "invalid_target" // RFC 8707 §2
)

// oauthError is an OAuth error response. Descriptions are fixed text: RFC
// 6749 §5.2 restricts their characters, and echoing input invites injection.
type oauthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func errInvalidRequest(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, errCodeInvalidRequest, desc}
}

// errInvalidClient answers failed client authentication with 401 (RFC 6749
// §5.2); writeError adds the WWW-Authenticate challenge.
func errInvalidClient(desc string) *oauthError {
	return &oauthError{http.StatusUnauthorized, errCodeInvalidClient, desc}
}

func errInvalidGrant(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, errCodeInvalidGrant, desc}
}

func errInvalidScope(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, errCodeInvalidScope, desc}
}

func errInvalidTarget(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, errCodeInvalidTarget, desc}
}

func errUnauthorizedClient(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, errCodeUnauthorizedClient, desc}
}

// errUnavailable reports a store outage. 503 rather than 500: the request
// was fine and may be retried.
var errUnavailable = &oauthError{http.StatusServiceUnavailable, errCodeTemporarilyUnavailable, "the token store is unavailable, try again later"}

var errBodyTooLarge = &oauthError{http.StatusRequestEntityTooLarge, errCodeInvalidRequest, "request body too large"}

// writeJSON writes a JSON response that no cache may keep (RFC 6749 §5.1).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen with the types used here
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError writes an error response of RFC 6749 §5.2.
func writeError(w http.ResponseWriter, e *oauthError) {
	if e.Status == http.StatusUnauthorized {
		// RFC 6749 §5.2: a 401 carries the challenge of the scheme the
		// client may use.
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth2"`)
	}
	writeJSON(w, e.Status, e)
}

// methodNotAllowed answers 405 with the Allow header (RFC 9110 §15.5.6).
func methodNotAllowed(w http.ResponseWriter, allow ...string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, &oauthError{http.StatusMethodNotAllowed, errCodeInvalidRequest, "method not allowed"})
}
