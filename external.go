package oauth2

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/external"
	"github.com/tokengate/caddy-oauth2/validator"
)

// ExternalIssuer is another authorization server whose access tokens the
// guard accepts besides those of this app's store: its JWTs, verified
// against its published keys, and, with an introspection endpoint, its opaque
// tokens (RFC 7662). Its clients need not be registered here.
type ExternalIssuer struct {
	// Issuer is the server's issuer identifier, exactly as its tokens'
	// iss claim and its metadata name it. Required.
	Issuer string `json:"issuer"`

	// JWKSURI is where the server publishes its signing keys. Default: the
	// jwks_uri of its RFC 8414 metadata
	// (<issuer>/.well-known/oauth-authorization-server), or else of its
	// OpenID Connect discovery document
	// (<issuer>/.well-known/openid-configuration).
	JWKSURI string `json:"jwks_uri,omitempty"`

	// Audiences are the identifiers of this API at that server: a JWT's aud
	// must contain one, and so must an introspection answer's aud when it
	// has one. Required.
	Audiences []string `json:"audiences,omitempty"`

	// Leeway is the clock skew allowed on exp and nbf. Default: 5s.
	Leeway caddy.Duration `json:"leeway,omitempty"`

	// JWKSMinRefreshInterval is the shortest time between two fetches of
	// the signing keys. Keys are fetched on first use and again when a token
	// names an unknown key id (a rotation), at most this often, so made-up
	// key ids cannot make the guard hammer the server. When a fetch fails the
	// last good keys stay in use. Default: 10s.
	JWKSMinRefreshInterval caddy.Duration `json:"jwks_min_refresh_interval,omitempty"`

	// JWKSMaxAge is how long fetched keys are used before they are fetched
	// again, so that a key the server withdrew stops verifying. One request
	// fetches while the others go on with the keys held. Default: 1h.
	JWKSMaxAge caddy.Duration `json:"jwks_max_age,omitempty"`

	// IntrospectionEndpoint is the server's RFC 7662 endpoint, asked about
	// tokens no other source recognises (opaque tokens). Default: none,
	// only the server's JWTs are accepted.
	IntrospectionEndpoint string `json:"introspection_endpoint,omitempty"`

	// IntrospectionClientID and IntrospectionClientSecret authenticate the
	// guard to the introspection endpoint (client_secret_basic). Placeholders
	// such as {env.IDP_SECRET} are replaced. Required with an introspection
	// endpoint.
	IntrospectionClientID     string `json:"introspection_client_id,omitempty"`
	IntrospectionClientSecret string `json:"introspection_client_secret,omitempty"`

	// IntrospectionCache is how long a positive introspection answer is
	// reused, never past the token's exp; a token revoked at the server
	// passes for up to this long. Negative answers are never cached.
	// Default: 0, every request asks.
	IntrospectionCache caddy.Duration `json:"introspection_cache,omitempty"`

	// IntrospectionCacheSize bounds the cached answers. Default: 10000.
	IntrospectionCacheSize int `json:"introspection_cache_size,omitempty"`

	// Timeout bounds each request to the server (metadata, keys,
	// introspection), within the guard's own store_timeout. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// TLSTrustedCACerts are PEM files of the CAs trusted for the server's
	// certificate, instead of the system's. Default: the system's roots.
	TLSTrustedCACerts []string `json:"tls_trusted_ca_certs,omitempty"`

	// TLSInsecureSkipVerify accepts any certificate from the server. For
	// tests only: anyone on the path can then forge keys and answers.
	// Default: false.
	TLSInsecureSkipVerify bool `json:"tls_insecure_skip_verify,omitempty"`
}

// issuerKeys holds the signing keys of external issuers across configuration
// reloads, keyed by everything that decides how they are fetched: a reload
// while an issuer is down keeps the last good keys, and does not refetch.
var issuerKeys = caddy.NewUsagePool()

// pooledKeys is an issuer's keys in issuerKeys, and the client that fetches
// them.
type pooledKeys struct {
	keys   *external.Keys
	client *http.Client
}

// Destruct drops the idle connections of the last configuration using them.
func (p pooledKeys) Destruct() error {
	p.client.CloseIdleConnections()
	return nil
}

// keysFor returns the shared keys of cfg's issuer, counted in g.keyRefs.
func (g *Guard) keysFor(iss *ExternalIssuer, cfg external.Config) (*external.Keys, error) {
	ref := fmt.Sprintf("%q %q %v %v %v %q %v", cfg.Issuer, cfg.JWKSURI, cfg.Client.Timeout, cfg.MinRefreshInterval,
		cfg.MaxAge, iss.TLSTrustedCACerts, iss.TLSInsecureSkipVerify)
	// The pooled keys outlive this configuration's logger.
	cfg.Log = keysLog(cfg.Issuer)
	v, _, err := issuerKeys.LoadOrNew(ref, func() (caddy.Destructor, error) {
		keys, err := external.NewKeys(cfg)
		return pooledKeys{keys: keys, client: cfg.Client}, err
	})
	if err != nil {
		return nil, err
	}
	g.keyRefs = append(g.keyRefs, ref)
	return v.(pooledKeys).keys, nil
}

// keysLog logs key fetch failures to Caddy's default logger.
func keysLog(issuer string) func(string, error) {
	return func(msg string, err error) {
		caddy.Log().Named("http.handlers.oauth2_guard").Warn(msg, zap.String("issuer", issuer), zap.Error(err))
	}
}

// externalSources builds the guard's sources for g.Issuers: each issuer's
// JWTs first, then one introspection source for all that have an endpoint,
// which recognises whatever no other source did.
func (g *Guard) externalSources() ([]validator.Source, error) {
	repl := caddy.NewReplacer()
	var sources []validator.Source
	var intro external.Introspection
	seen := map[string]bool{}
	for _, iss := range g.Issuers {
		if seen[iss.Issuer] {
			return nil, fmt.Errorf("issuer %q is configured twice", iss.Issuer)
		}
		seen[iss.Issuer] = true
		cfg, err := iss.config(repl, g.logger)
		if err != nil {
			return nil, fmt.Errorf("issuer %q: %v", iss.Issuer, err)
		}
		g.clients = append(g.clients, cfg.Client)
		if cfg.Keys, err = g.keysFor(iss, cfg); err != nil {
			return nil, err
		}
		j, err := external.NewJWT(cfg)
		if err != nil {
			return nil, err
		}
		sources = append(sources, j)
		if cfg.IntrospectionEndpoint != "" {
			in, err := external.NewIntrospector(cfg)
			if err != nil {
				return nil, err
			}
			intro = append(intro, in)
		}
	}
	if len(intro) > 0 {
		sources = append(sources, intro)
	}
	return sources, nil
}

// config translates the issuer into package external's terms.
func (iss *ExternalIssuer) config(repl *caddy.Replacer, logger *zap.Logger) (external.Config, error) {
	if u, err := url.Parse(iss.Issuer); err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return external.Config{}, fmt.Errorf("must be an http(s) URL without query or fragment (RFC 8414 §2)")
	}
	if len(iss.Audiences) == 0 {
		return external.Config{}, fmt.Errorf("audience is required: without it a token the issuer minted for another API would pass")
	}
	if iss.Leeway < 0 || iss.JWKSMinRefreshInterval < 0 || iss.JWKSMaxAge < 0 || iss.IntrospectionCache < 0 || iss.IntrospectionCacheSize < 0 || iss.Timeout < 0 {
		return external.Config{}, fmt.Errorf("durations and sizes must not be negative")
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: iss.TLSInsecureSkipVerify}
	if len(iss.TLSTrustedCACerts) > 0 {
		pool := x509.NewCertPool()
		for _, f := range iss.TLSTrustedCACerts {
			pem, err := os.ReadFile(repl.ReplaceAll(f, ""))
			if err != nil {
				return external.Config{}, fmt.Errorf("tls_trusted_ca_certs: %v", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return external.Config{}, fmt.Errorf("tls_trusted_ca_certs: %s holds no PEM certificate", f)
			}
		}
		tlsConfig.RootCAs = pool
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	timeout := time.Duration(iss.Timeout)
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	issuer := iss.Issuer
	return external.Config{
		Issuer:                iss.Issuer,
		JWKSURI:               repl.ReplaceAll(iss.JWKSURI, ""),
		Audiences:             iss.Audiences,
		Leeway:                time.Duration(iss.Leeway),
		MinRefreshInterval:    time.Duration(iss.JWKSMinRefreshInterval),
		MaxAge:                time.Duration(iss.JWKSMaxAge),
		IntrospectionEndpoint: repl.ReplaceAll(iss.IntrospectionEndpoint, ""),
		ClientID:              repl.ReplaceAll(iss.IntrospectionClientID, ""),
		ClientSecret:          repl.ReplaceAll(iss.IntrospectionClientSecret, ""),
		CacheTTL:              time.Duration(iss.IntrospectionCache),
		CacheEntries:          iss.IntrospectionCacheSize,
		Client:                &http.Client{Timeout: timeout, Transport: transport},
		Log: func(msg string, err error) {
			// The errors name URLs and statuses, never a token or secret.
			logger.Warn(msg, zap.String("issuer", issuer), zap.Error(err))
		},
	}, nil
}

// Cleanup drops the idle connections to external issuers, and this
// configuration's hold on their keys.
func (g *Guard) Cleanup() error {
	for _, c := range g.clients {
		c.CloseIdleConnections()
	}
	for _, ref := range g.keyRefs {
		_, _ = issuerKeys.Delete(ref)
	}
	g.keyRefs = nil
	return nil
}

// unmarshalExternalIssuer reads an issuer block:
//
//	issuer <url> {
//		audience <aud>...
//		jwks_uri <url>
//		leeway <duration>
//		jwks_min_refresh_interval <duration>
//		jwks_max_age <duration>
//		introspection_endpoint <url>
//		introspection_client <id> <secret>
//		introspection_cache <duration>
//		introspection_cache_size <n>
//		timeout <duration>
//		tls_trusted_ca_certs <pem_file>...
//		tls_insecure_skip_verify
//	}
func unmarshalExternalIssuer(d *caddyfile.Dispenser) (*ExternalIssuer, error) {
	iss := new(ExternalIssuer)
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	iss.Issuer = d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("duplicate subdirective %q", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "audience":
			iss.Audiences, err = someStrings(d)
		case "jwks_uri":
			err = oneString(d, &iss.JWKSURI)
		case "leeway":
			err = oneDuration(d, &iss.Leeway)
		case "jwks_min_refresh_interval":
			err = oneDuration(d, &iss.JWKSMinRefreshInterval)
		case "jwks_max_age":
			err = oneDuration(d, &iss.JWKSMaxAge)
		case "introspection_endpoint":
			err = oneString(d, &iss.IntrospectionEndpoint)
		case "introspection_client":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.ArgErr()
			}
			iss.IntrospectionClientID, iss.IntrospectionClientSecret = args[0], args[1]
		case "introspection_cache":
			err = oneDuration(d, &iss.IntrospectionCache)
		case "introspection_cache_size":
			var n int64
			if err = oneInt(d, &n); err == nil {
				iss.IntrospectionCacheSize = int(n)
			}
		case "timeout":
			err = oneDuration(d, &iss.Timeout)
		case "tls_trusted_ca_certs":
			iss.TLSTrustedCACerts, err = someStrings(d)
		case "tls_insecure_skip_verify":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			iss.TLSInsecureSkipVerify = true
		default:
			return nil, d.Errf("unrecognized subdirective %q", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(iss.Audiences) == 0 {
		return nil, d.Errf("issuer %s: audience is required", iss.Issuer)
	}
	if iss.IntrospectionEndpoint != "" && iss.IntrospectionClientID == "" {
		return nil, d.Errf("issuer %s: introspection_endpoint needs introspection_client", iss.Issuer)
	}
	return iss, nil
}
