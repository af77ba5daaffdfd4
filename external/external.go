// Package external lets the guard accept the access tokens of other
// authorization servers: JWTs verified against the issuer's published keys
// (RFC 9068, RFC 7517), and opaque tokens asked of its introspection
// endpoint (RFC 7662), with a bounded cache of positive answers.
//
// Each kind is a validator.Source. Nothing here knows Caddy: the sources take
// a plain Config and an *http.Client, and do no I/O before the first token
// that needs it, so provisioning stays cheap.
package external

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Config describes one external authorization server.
type Config struct {
	// Issuer is the server's issuer identifier, compared exactly with a
	// JWT's iss claim and with the iss of its metadata (RFC 8414 §3.3).
	Issuer string
	// JWKSURI is where its signing keys are published. Default: the
	// jwks_uri of its metadata, read from
	// <issuer>/.well-known/oauth-authorization-server (RFC 8414), then
	// <issuer>/.well-known/openid-configuration.
	JWKSURI string
	// Audiences are the values this resource server answers to: a JWT's
	// aud must contain one of them, and so must an introspection answer's
	// aud when it has one. Required for JWTs.
	Audiences []string
	// Leeway is the clock skew allowed on exp and nbf. Default: 5s.
	Leeway time.Duration
	// MinRefreshInterval is the shortest time between two fetches of the
	// keys, however many tokens with unknown key ids arrive. Default: 10s.
	MinRefreshInterval time.Duration
	// Keys, when set, are the issuer's signing keys as NewKeys made them,
	// shared with other sources; their own fetch settings apply, and
	// JWKSURI, MinRefreshInterval and MaxAge here are ignored. Default: keys
	// of this source's own.
	Keys *Keys
	// MaxAge is how long a fetched key set is used before it is fetched
	// again, so that keys the server withdrew stop verifying. The fetch is
	// made by one request while the others go on with the set held; a
	// failed one keeps it. Default: 1h; negative: never.
	MaxAge time.Duration

	// IntrospectionEndpoint is the RFC 7662 endpoint asked about opaque
	// tokens. Default: none, opaque tokens of this issuer are not accepted.
	IntrospectionEndpoint string
	// ClientID and ClientSecret authenticate this resource server to the
	// introspection endpoint (client_secret_basic, RFC 6749 §2.3.1).
	ClientID, ClientSecret string
	// CacheTTL is how long a positive introspection answer is reused, never
	// past the token's exp. Default: 0, every request asks.
	CacheTTL time.Duration
	// CacheEntries bounds the cache. Default: 10,000.
	CacheEntries int

	// Client makes every request to the server. Default: a client with a
	// 5s timeout.
	Client *http.Client
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// Log reports failures to reach the server, which the guard answers
	// with 503 or, for keys, rides out on the last good set. Default: none.
	Log func(msg string, err error)
}

// ErrUnavailable wraps every failure to reach the server or understand its
// answer: the guard answers 503, never a pass.
var ErrUnavailable = errors.New("authorization server unavailable")

// maxBody bounds what is read of the server's answers.
const maxBody = 1 << 20

// maxTokenLen bounds the tokens sent to the server or parsed: anything longer
// is nobody's access token.
const maxTokenLen = 16 << 10

func (c *Config) defaults() error {
	if c.Issuer == "" {
		return errors.New("external: Issuer is required")
	}
	if c.Leeway == 0 {
		c.Leeway = 5 * time.Second
	}
	if c.MinRefreshInterval == 0 {
		c.MinRefreshInterval = 10 * time.Second
	}
	if c.MaxAge == 0 {
		c.MaxAge = time.Hour
	}
	if c.CacheEntries <= 0 {
		c.CacheEntries = 10_000
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = func(string, error) {}
	}
	return nil
}

// metadata is what is read of the server's RFC 8414 / OIDC discovery
// document.
type metadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// discovery fetches the metadata once, and again only after a failure.
type discovery struct {
	cfg *Config
	mu  sync.Mutex
	md  *metadata
}

// get returns the metadata, fetching it if not known yet.
func (d *discovery) get(ctx context.Context) (*metadata, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.md != nil {
		return d.md, nil
	}
	base := strings.TrimSuffix(d.cfg.Issuer, "/")
	var errs []error
	for _, wk := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		var md metadata
		err := getJSON(ctx, d.cfg.Client, base+wk, &md)
		if err == nil && md.Issuer != d.cfg.Issuer {
			// RFC 8414 §3.3: a document naming another issuer is not used.
			err = fmt.Errorf("metadata at %s names issuer %q", base+wk, md.Issuer)
		}
		if err == nil {
			d.md = &md
			return d.md, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: discovering %s: %w", ErrUnavailable, d.cfg.Issuer, errors.Join(errs...))
}

// getJSON GETs url and decodes its JSON answer into v.
func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}
