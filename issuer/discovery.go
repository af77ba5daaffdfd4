package issuer

import (
	"net/http"
	"slices"
)

// discovery is the OpenID Provider metadata (OpenID Connect Discovery §3):
// the RFC 8414 document, whose members mean the same, plus OpenID
// Connect's own.
type discovery struct {
	*metadata
	UserInfoEndpoint                 string   `json:"userinfo_endpoint"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported                  []string `json:"claims_supported"`
	ClaimsParameterSupported         bool     `json:"claims_parameter_supported"`
	RequestParameterSupported        bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported     bool     `json:"request_uri_parameter_supported"`
}

// serveDiscovery serves the OpenID Provider metadata (OpenID Connect
// Discovery §4), consistent with the RFC 8414 document at MetadataPath.
func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, http.MethodGet, http.MethodHead)
		return
	}
	md := s.metadataFor(r)
	// The scopes that release claims are supported even when no
	// configured client has them yet; openid always.
	scopes := slices.Clone(md.ScopesSupported)
	for _, sc := range s.oidc.scopes {
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	slices.Sort(scopes)
	md.ScopesSupported = scopes
	claims := []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "at_hash", "sid"}
	for _, cl := range s.oidc.Claims {
		claims = append(claims, cl.Name)
	}
	writeJSON(w, http.StatusOK, &discovery{
		metadata:                         md,
		UserInfoEndpoint:                 s.endpointURL(r, UserInfoPath),
		SubjectTypesSupported:            []string{s.oidc.SubjectType},
		IDTokenSigningAlgValuesSupported: s.oidc.Ring.Algorithms(),
		ClaimsSupported:                  claims,
	})
}
