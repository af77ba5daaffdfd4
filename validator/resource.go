package validator

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// ProtectedResourceWellKnown is the well-known path of RFC 9728 §3.
const ProtectedResourceWellKnown = "/.well-known/oauth-protected-resource"

// ProtectedResource is a resource server's metadata document (RFC 9728),
// which MCP clients read to find the authorization server that issues
// tokens for it.
type ProtectedResource struct {
	// Resource is the resource identifier: an https (or http) URL without
	// a fragment. Required.
	Resource string
	// Name is the human-readable resource_name. Default: none.
	Name string
	// Scopes are the scopes_supported. Default: none.
	Scopes []string
	// AuthorizationServers returns the issuer identifiers of the
	// authorization servers whose tokens pass, in order, for a request.
	// Required.
	AuthorizationServers func(r *http.Request) []string

	path, url string
}

// protectedResourceDoc is the document of RFC 9728 §2.
type protectedResourceDoc struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

// NewProtectedResource checks p and derives where its document is served.
func NewProtectedResource(p ProtectedResource) (*ProtectedResource, error) {
	u, err := url.Parse(p.Resource)
	if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.User != nil ||
		u.Fragment != "" || strings.Contains(p.Resource, "#") || u.RawQuery != "" {
		return nil, errors.New("validator: resource must be an http(s) URL without userinfo, query or fragment (RFC 9728 §1.2)")
	}
	if p.AuthorizationServers == nil {
		return nil, errors.New("validator: the resource's authorization servers are required")
	}
	// RFC 9728 §3.1: the well-known segment goes between host and path.
	p.path = ProtectedResourceWellKnown + strings.TrimSuffix(u.EscapedPath(), "/")
	p.url = u.Scheme + "://" + u.Host + p.path
	return &p, nil
}

// Path is the request path the document is served at.
func (p *ProtectedResource) Path() string { return p.path }

// URL is the document's absolute URL, the resource_metadata of challenges.
func (p *ProtectedResource) URL() string { return p.url }

// ServeHTTP serves the document, to anyone: it holds nothing secret, and
// browser-based clients read it across origins.
func (p *ProtectedResource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions: // a CORS preflight
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Max-Age", "300")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	b, _ := json.Marshal(protectedResourceDoc{
		Resource:               p.Resource,
		AuthorizationServers:   p.AuthorizationServers(r),
		ScopesSupported:        p.Scopes,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           p.Name,
	})
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(b)
	}
}
