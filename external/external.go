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
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/caddy-oauth2/fetch"
	"github.com/tokengate/caddy-oauth2/validator"
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
	// MaxAge is the longest a fetched key set is used. It is fetched again
	// once half as old, by one request while the others go on with the set
	// held, so that keys the server withdrew stop verifying; a failed fetch
	// keeps the set, but a set older than MaxAge is not used: that issuer's
	// JWTs are then an outage (503) until a fetch succeeds. A fetch that
	// answers 200 with no usable key withdraws them all (401). Default: 1h;
	// negative: never refetched, never too old.
	MaxAge time.Duration
	// RequireTyp refuses a JWT whose typ header is not at+jwt (RFC 9068
	// §4). Default: false, a typ naming another kind of JWT (logout+jwt,
	// say) is refused, and a missing one or "JWT" is accepted.
	RequireTyp bool

	// IntrospectionEndpoint is the RFC 7662 endpoint asked about opaque
	// tokens. Default: none, opaque tokens of this issuer are not accepted.
	IntrospectionEndpoint string
	// ClientID and ClientSecret authenticate this resource server to the
	// introspection endpoint (client_secret_basic, RFC 6749 §2.3.1).
	ClientID, ClientSecret string
	// CacheTTL is how long a positive introspection answer is reused, never
	// past the token's exp. Default: 0, every request asks.
	CacheTTL time.Duration
	// CacheEntries bounds the cache, and separately the cache of negative
	// answers. Default: 10,000.
	CacheEntries int
	// NegativeCacheTTL is how long a "not active" answer is reused. A
	// token the server once calls inactive never becomes active (RFC 7662
	// §2.2), so this only bounds memory, and spares the server a token
	// presented again and again. Default: 10s.
	NegativeCacheTTL time.Duration
	// MaxConcurrent caps the introspection calls under way at once; a token
	// that finds no free slot is answered as an outage wrapping
	// validator.ErrOverloaded (503), never a pass. Default: 16.
	MaxConcurrent int
	// TokenPrefixes, when set, are the prefixes of this server's opaque
	// tokens: a token with one goes to this server only, and this server
	// is asked about no other. Default: none, asked about every opaque
	// token that no server claims by prefix.
	TokenPrefixes []string
	// SubjectPrefix is prepended to the user id the guard reports for this
	// server's tokens ({http.auth.user.id}), so that its users cannot pass
	// for local ones of the same name. Default: none.
	SubjectPrefix string

	// Client makes every request to the server; its Timeout is the
	// deadline of each (and each is given its own, not the caller's store
	// deadline). Default: fetch.New with a 5s timeout and at most 3
	// same-origin redirects for metadata and keys (introspection follows
	// none).
	Client *fetch.Client
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// Log reports failures to reach the server, which the guard answers
	// with 503 or, for keys, rides out on the last good set. The first
	// failure of a kind is logged at once, then at most one line per
	// LogInterval, with how many were not logged since the last
	// (suppressed). Default: none.
	Log func(msg string, err error, suppressed int)
	// LogInterval is the shortest time between two log lines of one kind.
	// Default: 10s.
	LogInterval time.Duration

	// foreign is what every grant of this server says of it.
	foreign *validator.ForeignIssuer
}

// ErrUnavailable wraps every failure to reach the server or understand its
// answer: the guard answers 503, never a pass.
var ErrUnavailable = errors.New("authorization server unavailable")

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
	if c.NegativeCacheTTL == 0 {
		c.NegativeCacheTTL = 10 * time.Second
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 16
	}
	if c.Client == nil {
		c.Client = fetch.New(fetch.Options{MaxRedirects: 3})
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = func(string, error, int) {}
	}
	if c.LogInterval <= 0 {
		c.LogInterval = 10 * time.Second
	}
	c.foreign = &validator.ForeignIssuer{ID: c.Issuer, SubjectPrefix: c.SubjectPrefix}
	iss, err := url.Parse(c.Issuer)
	if err != nil || iss.Host == "" || iss.Scheme != "https" && !(iss.Scheme == "http" && fetch.Loopback(iss)) {
		// RFC 8414 §2: https. Plain http only on loopback, for tests and
		// sidecars: anyone on the path could swap the keys.
		return fmt.Errorf("external: issuer %q must be an https URL (or http on a loopback host)", c.Issuer)
	}
	if c.JWKSURI != "" {
		if err := c.endpoint("jwks_uri", c.JWKSURI); err != nil {
			return err
		}
	}
	if c.IntrospectionEndpoint != "" {
		if err := c.endpoint("introspection endpoint", c.IntrospectionEndpoint); err != nil {
			return err
		}
	}
	return nil
}

// endpoint checks a URL the gateway sends requests (and tokens) to: https,
// unless the issuer itself is plain http on loopback.
func (c *Config) endpoint(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("external: issuer %s: %s %q is not an http(s) URL", c.Issuer, what, raw)
	}
	if u.Scheme == "https" {
		return nil
	}
	iss, _ := url.Parse(c.Issuer)
	if u.Scheme == "http" && iss.Scheme == "http" && fetch.Loopback(iss) && fetch.Loopback(u) {
		return nil
	}
	return fmt.Errorf("external: issuer %s: %s %q must be https", c.Issuer, what, raw)
}

// limitedLog logs the first failure of a kind at once, then at most one
// line per interval, saying how many were not logged in between: an
// outage under load must not flood the log.
type limitedLog struct {
	cfg        *Config
	msg        string
	mu         sync.Mutex
	last       time.Time // of the last line logged
	suppressed int
}

func (l *limitedLog) log(err error) {
	now := l.cfg.Now()
	l.mu.Lock()
	if !l.last.IsZero() && now.Sub(l.last) < l.cfg.LogInterval {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	l.cfg.Log(l.msg, err, n)
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
		if err == nil && md.JWKSURI != "" {
			err = d.cfg.endpoint("jwks_uri", md.JWKSURI)
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
func getJSON(ctx context.Context, client *fetch.Client, url string, v any) error {
	status, b, err := client.Get(ctx, url, "application/json")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, status, http.StatusText(status))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}
