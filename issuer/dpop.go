package issuer

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/tokengate/caddy-oauth2/dpop"
)

// checkDPoP checks the DPoP proof of a token request (RFC 9449 §4.3, §5)
// and returns the thumbprint of its key, "" when the request has none and
// needs none. With server nonces, every answer carries the current one
// (§8.2).
func (s *Server) checkDPoP(w http.ResponseWriter, r *http.Request, c *client) (string, *oauthError) {
	if s.dpop == nil {
		return "", nil // RFC 9449 §5: a server without DPoP ignores the header
	}
	if n := s.dpop.CurrentNonce(); n != "" {
		w.Header().Set("DPoP-Nonce", n)
	}
	p, de := s.verifyProof(r, TokenPath, dpop.Request{Method: http.MethodPost})
	switch {
	case de != nil:
		return "", &oauthError{http.StatusBadRequest, de.Code, de.Description}
	case p != nil:
		return p.JKT, nil
	case s.requireDPoP || c.DPoPBoundAccessTokens:
		s.dpop.Refused("missing")
		return "", errInvalidDPoPProof("this client must send a DPoP proof")
	}
	return "", nil
}

// verifyProof checks the DPoP proof of a request to the endpoint at path
// (RFC 9449 §4.3), with req's ath and key when they are set: the one
// check of the token, PAR and UserInfo endpoints. A request without a
// proof gives (nil, nil), which each endpoint answers its own way. A
// malformed header is counted here, a refused proof by Verify.
func (s *Server) verifyProof(r *http.Request, path string, req dpop.Request) (*dpop.Proof, *dpop.Error) {
	raw, err := dpop.Header(r.Header)
	if err == nil && raw == "" {
		return nil, nil
	}
	var p *dpop.Proof
	if err != nil {
		s.dpop.Refused("header")
	} else if req.URL, err = url.Parse(s.endpointURL(r, path)); err == nil {
		p, err = s.dpop.Verify(raw, req)
	}
	if err == nil {
		return p, nil
	}
	var de *dpop.Error
	if !errors.As(err, &de) {
		de = &dpop.Error{Code: dpop.CodeInvalidProof, Description: "invalid DPoP proof"}
	}
	return nil, de
}

func errInvalidDPoPProof(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, dpop.CodeInvalidProof, desc}
}

// refreshJKT is the key a new refresh token is bound to: RFC 9449 §5.0
// binds a public client's refresh tokens to the key of the proof (which a
// bound one already had, see checkRefresh); a confidential client's are
// not bound, it authenticates instead.
func refreshJKT(c *client, jkt, old string) string {
	if !c.Public() {
		return ""
	}
	if old != "" {
		return old
	}
	return jkt
}
