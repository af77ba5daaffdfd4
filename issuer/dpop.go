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
	proof, err := dpop.Header(r.Header)
	if err != nil {
		s.dpop.Refused("header")
	} else if proof == "" {
		if !s.requireDPoP && !c.DPoPBoundAccessTokens {
			return "", nil
		}
		err = &dpop.Error{Code: dpop.CodeInvalidProof, Reason: "missing", Description: "this client must send a DPoP proof"}
		s.dpop.Refused("missing")
	}
	if err == nil {
		u, perr := url.Parse(s.endpointURL(r, TokenPath))
		if perr != nil {
			return "", errUnavailable
		}
		var p *dpop.Proof
		if p, err = s.dpop.Verify(proof, dpop.Request{Method: http.MethodPost, URL: u}); err == nil {
			return p.JKT, nil
		}
	}
	var de *dpop.Error
	if !errors.As(err, &de) {
		return "", errInvalidDPoPProof("invalid DPoP proof")
	}
	return "", &oauthError{http.StatusBadRequest, de.Code, de.Description}
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
