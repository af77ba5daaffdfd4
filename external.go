package oauth2

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/external"
	"github.com/tokengate/caddy-oauth2/fetch"
	"github.com/tokengate/caddy-oauth2/token"
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

	// JWKSMaxAge is the longest fetched keys are used. They are fetched
	// again once half as old (one request fetches while the others go on
	// with the keys held), so that a key the server withdrew stops
	// verifying. When that fetch fails (5xx, unreachable) the keys held stay
	// in use, but never past this age: then the issuer's JWTs are answered
	// 503 until a fetch succeeds. A fetch answered 200 with no usable key
	// withdraws them all: the issuer's JWTs are then refused (401).
	// Default: 1h.
	JWKSMaxAge caddy.Duration `json:"jwks_max_age,omitempty"`

	// RequireTyp makes the JWT header typ "at+jwt" (RFC 9068 §2.1)
	// mandatory. Default: false; a typ naming another kind of JWT
	// (logout+jwt, secevent+jwt, ...) is refused all the same, as is a JWT
	// with a nonce or at_hash claim (an ID token), while "JWT" or no typ
	// passes.
	RequireTyp bool `json:"require_typ,omitempty"`

	// SubjectPrefix is prepended to {http.auth.user.id} for this issuer's
	// tokens, so that user alice of that server cannot pass for the local
	// alice. {oauth2.subject} stays the token's own sub. Default: none.
	SubjectPrefix string `json:"subject_prefix,omitempty"`

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
	// passes for up to this long. Default: 0, every request asks.
	IntrospectionCache caddy.Duration `json:"introspection_cache,omitempty"`

	// IntrospectionNegativeCache is how long a negative introspection
	// answer (not active, not an access token, not for this audience) is
	// reused. An inactive token never becomes active again (RFC 7662
	// §2.2), so this only spares the server a token presented again and
	// again. Default: 10s.
	IntrospectionNegativeCache caddy.Duration `json:"introspection_negative_cache,omitempty"`

	// IntrospectionCacheSize bounds the cached answers, positive and
	// negative each. Default: 10000.
	IntrospectionCacheSize int `json:"introspection_cache_size,omitempty"`

	// IntrospectionMaxConcurrent caps the introspection calls under way to
	// this server at once. A request that finds every slot taken is
	// answered 503 with Retry-After (counted as
	// caddy_oauth2_guard_requests_total{result="overloaded"}), never a
	// pass. Default: 16.
	IntrospectionMaxConcurrent int `json:"introspection_max_concurrent,omitempty"`

	// TokenPrefixes claim opaque tokens for this server: a token starting
	// with one is introspected here only, and this server is asked about
	// no other token. Default: none, the server is asked about every
	// opaque token no issuer claims (all such servers at once).
	TokenPrefixes []string `json:"token_prefixes,omitempty"`

	// Timeout bounds each request to the server (metadata, keys,
	// introspection). It is the server's own deadline, not the guard's
	// store_timeout. Default: 5s.
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
	client *fetch.Client
}

// Destruct drops the idle connections of the last configuration using them.
func (p pooledKeys) Destruct() error {
	p.client.CloseIdleConnections()
	return nil
}

// keysFor returns the shared keys of cfg's issuer, counted in g.keyRefs.
func (g *Guard) keysFor(iss *ExternalIssuer, cfg external.Config) (*external.Keys, error) {
	ref := fmt.Sprintf("%q %q %v %v %v %q %v", cfg.Issuer, cfg.JWKSURI, cfg.Client.Timeout(), cfg.MinRefreshInterval,
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
func keysLog(issuer string) func(string, error, int) {
	return issuerLog(caddy.Log().Named("http.handlers.oauth2_guard"), issuer)
}

// issuerLog logs an issuer's failures, already rate-limited by package
// external: the errors name URLs and statuses, never a token or secret.
func issuerLog(logger *zap.Logger, issuer string) func(string, error, int) {
	return func(msg string, err error, suppressed int) {
		if suppressed > 0 {
			logger.Warn(msg, zap.String("issuer", issuer), zap.Error(err), zap.Int("suppressed", suppressed))
			return
		}
		logger.Warn(msg, zap.String("issuer", issuer), zap.Error(err))
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
	prefixes := map[string]string{}
	for _, iss := range g.Issuers {
		if seen[iss.Issuer] {
			return nil, fmt.Errorf("issuer %q is configured twice", iss.Issuer)
		}
		seen[iss.Issuer] = true
		for _, p := range iss.TokenPrefixes {
			for q, other := range prefixes {
				if strings.HasPrefix(p, q) || strings.HasPrefix(q, p) {
					return nil, fmt.Errorf("issuer %q: token_prefix %q overlaps %q of issuer %q", iss.Issuer, p, q, other)
				}
			}
			prefixes[p] = iss.Issuer
		}
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
	if iss.Leeway < 0 || iss.JWKSMinRefreshInterval < 0 || iss.JWKSMaxAge < 0 || iss.IntrospectionCache < 0 || iss.IntrospectionCacheSize < 0 || iss.Timeout < 0 ||
		iss.IntrospectionNegativeCache < 0 || iss.IntrospectionMaxConcurrent < 0 {
		return external.Config{}, fmt.Errorf("durations and sizes must not be negative")
	}
	if len(iss.TokenPrefixes) > 0 && iss.IntrospectionEndpoint == "" {
		return external.Config{}, fmt.Errorf("token_prefix needs an introspection endpoint")
	}
	for _, p := range iss.TokenPrefixes {
		if p == "" || strings.HasPrefix(p, token.AccessPrefix) || strings.HasPrefix(p, token.RefreshPrefix) || strings.HasPrefix(p, token.CodePrefix) ||
			strings.HasPrefix(token.AccessPrefix, p) || strings.HasPrefix(token.RefreshPrefix, p) || strings.HasPrefix(token.CodePrefix, p) {
			// Our own codes and tokens never leave the gateway.
			return external.Config{}, fmt.Errorf("token_prefix %q is empty or overlaps this server's own prefixes", p)
		}
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
	timeout := time.Duration(iss.Timeout)
	if timeout == 0 {
		timeout = 5 * time.Second
	}
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
		NegativeCacheTTL:      time.Duration(iss.IntrospectionNegativeCache),
		MaxConcurrent:         iss.IntrospectionMaxConcurrent,
		TokenPrefixes:         iss.TokenPrefixes,
		RequireTyp:            iss.RequireTyp,
		SubjectPrefix:         iss.SubjectPrefix,
		// Metadata and keys may move within their origin; introspection
		// never follows a redirect (the token and our secret are in it).
		Client: fetch.New(fetch.Options{Timeout: timeout, MaxRedirects: 3, TLS: tlsConfig}),
		Log:    issuerLog(logger, iss.Issuer),
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
//		introspection_negative_cache <duration>
//		introspection_cache_size <n>
//		introspection_max_concurrent <n>
//		token_prefix <prefix>...
//		require_typ
//		subject_prefix <text>
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
		case "introspection_negative_cache":
			err = oneDuration(d, &iss.IntrospectionNegativeCache)
		case "introspection_max_concurrent":
			var n int64
			if err = oneInt(d, &n); err == nil {
				iss.IntrospectionMaxConcurrent = int(n)
			}
		case "token_prefix":
			iss.TokenPrefixes, err = someStrings(d)
		case "require_typ":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			iss.RequireTyp = true
		case "subject_prefix":
			err = oneString(d, &iss.SubjectPrefix)
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
	if len(iss.TokenPrefixes) > 0 && iss.IntrospectionEndpoint == "" {
		return nil, d.Errf("issuer %s: token_prefix needs introspection_endpoint", iss.Issuer)
	}
	return iss, nil
}
