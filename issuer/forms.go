package issuer

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
)

// clientForm reads a POSTed form in which none of params may repeat
// (RFC 6749 §3.1) and authenticates the client sending it (§2.3): the
// common start of the token, revocation and introspection endpoints.
func (s *Server) clientForm(w http.ResponseWriter, r *http.Request, params []string) (url.Values, *client, *oauthError) {
	form, oerr := s.readForm(w, r)
	if oerr != nil {
		return nil, nil, oerr
	}
	if name, ok := repeated(form, params...); ok {
		return nil, nil, errInvalidRequest("parameter " + name + " repeated")
	}
	c, oerr := s.authenticateClient(w, r, form)
	if oerr != nil && oerr.Code == errCodeInvalidClient {
		s.obs.ClientAuthFailed(s.claimedClient(r, form))
	}
	return form, c, oerr
}

// readForm reads an application/x-www-form-urlencoded body (RFC 6749 §3.2).
// Parameters in the URL query are ignored: credentials do not belong there.
func (s *Server) readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, errInvalidRequest("content type must be application/x-www-form-urlencoded")
	}
	if r.ContentLength > s.maxBody {
		return nil, errBodyTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errBodyTooLarge
		}
		return nil, errInvalidRequest("cannot read request body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errInvalidRequest("malformed request body")
	}
	return form, nil
}

// repeated returns the first of names that occurs more than once in form.
// RFC 6749 §3.1, §3.2: parameters must not be included more than once;
// unrecognised parameters are ignored, repeated or not.
func repeated(form url.Values, names ...string) (string, bool) {
	for _, n := range names {
		if len(form[n]) > 1 {
			return n, true
		}
	}
	return "", false
}
