package external

import (
	"crypto/tls"

	"github.com/tokengate/caddy-oauth2/fetch"
)

// fetchClient is the type of Config.Client.
type fetchClient = fetch.Client

// newFetchClient returns an outbound client with the given TLS settings.
func newFetchClient(c *tls.Config) *fetch.Client {
	return fetch.New(fetch.Options{TLS: c, MaxRedirects: 3})
}
