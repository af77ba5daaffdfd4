package oauth2

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"slices"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/caddy-oauth2/issuer"
	"github.com/tokengate/caddy-oauth2/validator"
)

// ClientIDMetadataDocuments configures client ID metadata documents
// (draft-ietf-oauth-client-id-metadata-document, adopted by the MCP
// authorization spec): a client_id that is an https URL with a path is
// fetched (https only, no redirects, no private addresses, 5s, 64 KiB),
// must name itself in client_id, is cached per its caching headers between
// 5 minutes and 24 hours, and is a public client that must use PKCE and
// always sees the consent page.
type ClientIDMetadataDocuments struct {
	// Scopes are the most such a client may be granted: the document's
	// scope is cut to them, one naming none gets them all. Default: none.
	Scopes []string `json:"scopes,omitempty"`
	// AllowHosts, when set, are the only hosts whose documents are
	// accepted: exact names or *.example.com for any name below
	// example.com. Default: any host with a public address.
	AllowHosts []string `json:"allow_hosts,omitempty"`
	// AllowPrivateAddresses fetches documents from loopback, private and
	// link-local addresses too. For tests only. Default: false.
	AllowPrivateAddresses bool `json:"allow_private_addresses,omitempty"`
	// RootCA is a PEM file of certificates trusted for the fetches instead
	// of the system's roots, to reach a test server. For tests only.
	// Placeholders are replaced. Default: the system's roots.
	RootCA string `json:"root_ca,omitempty"`
}

// provisionResources collects the app-wide resources (the guards add
// theirs in their own Provision, see Guard.provisionResource) and builds
// the metadata documents' settings. Each configuration load has its own
// app, so a reload starts from this configuration's resources alone.
func (a *App) provisionResources(repl *caddy.Replacer) error {
	a.resources = issuer.NewResources()
	for _, res := range a.Resources {
		if err := a.resources.Add(res, ""); err != nil {
			return fmt.Errorf("resources: %v", err)
		}
	}
	d := a.ClientIDMetadataDocuments
	if d == nil {
		return nil
	}
	a.cimd = &issuer.MetadataDocuments{
		Scopes:                d.Scopes,
		AllowHosts:            d.AllowHosts,
		AllowPrivateAddresses: d.AllowPrivateAddresses,
		Failed:                a.metrics.documentFailed,
	}
	if file := repl.ReplaceAll(d.RootCA, ""); file != "" {
		pem, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("client_id_metadata_documents: root_ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("client_id_metadata_documents: root_ca %s holds no PEM certificate", file)
		}
		a.cimd.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	a.cimdScopes = make(map[string]bool, len(d.Scopes))
	for _, sc := range d.Scopes {
		a.cimdScopes[sc] = true
	}
	return nil
}

// provisionResource sets up a guard with a resource: its audience holds
// the resource, the app lets every client name it, and the guard serves
// its metadata document (RFC 9728).
func (g *Guard) provisionResource(app *App) error {
	if g.Resource == "" {
		if g.ResourceName != "" {
			return fmt.Errorf("resource_name needs resource")
		}
		return nil
	}
	if !slices.Contains(g.Audience, g.Resource) {
		g.Audience = append(slices.Clone(g.Audience), g.Resource)
	}
	if err := app.resources.Add(g.Resource, g.ResourceName); err != nil {
		return err
	}
	others := make([]string, 0, len(g.Issuers))
	for _, iss := range g.Issuers {
		others = append(others, iss.Issuer)
	}
	var err error
	g.prm, err = validator.NewProtectedResource(validator.ProtectedResource{
		Resource: g.Resource,
		Name:     g.ResourceName,
		Scopes:   g.Scopes,
		// This app's issuer first, then each other issuer.
		AuthorizationServers: func(r *http.Request) []string {
			list := make([]string, 0, 1+len(others))
			if own := app.issuerOf(r); own != "" {
				list = append(list, own)
			}
			return append(list, others...)
		},
	})
	return err
}

// resourceMetadataURL is the URL of the guard's metadata document, "" for
// a guard without resource.
func (g *Guard) resourceMetadataURL() string {
	if g.prm == nil {
		return ""
	}
	return g.prm.URL()
}
