package issuer

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// metadata is the authorization server metadata of RFC 8414 §2.
type metadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri,omitempty"`
	RegistrationEndpoint                       string   `json:"registration_endpoint,omitempty"`
	EndSessionEndpoint                         string   `json:"end_session_endpoint,omitempty"`
	ScopesSupported                            []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	// draft-ietf-oauth-client-id-metadata-document §4: https client IDs
	// naming their metadata document are accepted.
	ClientIDMetadataDocumentSupported bool `json:"client_id_metadata_document_supported,omitempty"`
	// RFC 9126 §5.
	PushedAuthorizationRequestEndpoint string `json:"pushed_authorization_request_endpoint,omitempty"`
	RequirePushedAuthorizationRequests bool   `json:"require_pushed_authorization_requests,omitempty"`
	// RFC 8414 §2: the algorithms of private_key_jwt assertions.
	TokenEndpointAuthSigningAlgValuesSupported         []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	RevocationEndpointAuthSigningAlgValuesSupported    []string `json:"revocation_endpoint_auth_signing_alg_values_supported,omitempty"`
	IntrospectionEndpointAuthSigningAlgValuesSupported []string `json:"introspection_endpoint_auth_signing_alg_values_supported,omitempty"`
	// DPoPSigningAlgValuesSupported is RFC 9449 §5.1's, when DPoP is on.
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported,omitempty"`
}

// serveMetadata serves the metadata document (RFC 8414 §3).
func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, http.MethodGet, http.MethodHead)
		return
	}
	writeJSON(w, http.StatusOK, s.metadataFor(r))
}

// metadataFor builds the metadata document of a request's issuer.
func (s *Server) metadataFor(r *http.Request) *metadata {
	var jwks string
	if s.ring != nil || s.oidc != nil {
		jwks = s.endpointURL(r, JWKSPath)
	}
	var register string
	if s.registration != nil {
		register = s.endpointURL(r, RegisterPath) // RFC 8414 §2, RFC 7591 §3
	}
	var endSession string
	if s.oidc != nil {
		endSession = s.endpointURL(r, LogoutPath) // RP-Initiated Logout §3.1
	}
	var dpopAlgs []string
	if s.dpop != nil {
		dpopAlgs = s.dpop.Algorithms()
	}
	var par string
	if s.handlers[PARPath] != nil {
		par = s.endpointURL(r, PARPath)
	}
	// private_key_jwt needs the single-use store for its jti; under fapi2 it
	// is the only method for confidential clients.
	secretMethods := []string{"client_secret_basic", "client_secret_post"}
	if s.fapi2 {
		secretMethods = nil
	}
	tokenMethods := append(slices.Clone(secretMethods), "none")
	introMethods := slices.Clone(secretMethods)
	var algs []string
	if s.singleUse != nil {
		tokenMethods = append(tokenMethods, AuthMethodPrivateKeyJWT)
		introMethods = append(introMethods, AuthMethodPrivateKeyJWT)
		algs = assertionAlgNames
	}
	return &metadata{
		DPoPSigningAlgValuesSupported:                      dpopAlgs,
		PushedAuthorizationRequestEndpoint:                 par,
		RequirePushedAuthorizationRequests:                 s.requirePAR,
		TokenEndpointAuthSigningAlgValuesSupported:         algs,
		RevocationEndpointAuthSigningAlgValuesSupported:    algs,
		IntrospectionEndpointAuthSigningAlgValuesSupported: algs,
		EndSessionEndpoint:                                 endSession,
		RegistrationEndpoint:                               register,
		Issuer:                                             s.issuerFor(r),
		AuthorizationEndpoint:                              s.endpointURL(r, AuthorizePath),
		TokenEndpoint:                                      s.endpointURL(r, TokenPath),
		RevocationEndpoint:                                 s.endpointURL(r, RevokePath),
		IntrospectionEndpoint:                              s.endpointURL(r, IntrospectPath),
		JWKSURI:                                            jwks,
		ScopesSupported:                                    s.scopesSupported,
		ResponseTypesSupported:                             []string{"code"},
		ResponseModesSupported:                             []string{"query"},
		GrantTypesSupported:                                s.grantsSupported,
		TokenEndpointAuthMethodsSupported:                  tokenMethods,
		RevocationEndpointAuthMethodsSupported:             tokenMethods,
		IntrospectionEndpointAuthMethodsSupported:          introMethods,
		CodeChallengeMethodsSupported:                      []string{pkceS256},
		AuthorizationResponseIssParameterSupported:         true,
		ClientIDMetadataDocumentSupported:                  s.cimd != nil,
	}
}

// addPathInsertedMetadata serves the metadata also where RFC 8414 §3.1
// puts it for an issuer with a path: the well-known segment inserted
// between host and path (https://example.com/tenant is described at
// https://example.com/.well-known/oauth-authorization-server/tenant).
func (s *Server) addPathInsertedMetadata() {
	u, err := url.Parse(s.issuer)
	if s.issuer == "" || err != nil {
		return
	}
	if p := strings.TrimSuffix(u.EscapedPath(), "/"); p != "" {
		s.handlers[MetadataPath+p] = http.HandlerFunc(s.serveMetadata)
	}
}
