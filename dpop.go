package oauth2

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tokengate/caddy-oauth2/dpop"
	"github.com/tokengate/caddy-oauth2/token"
)

// DPoP tunes DPoP (RFC 9449), which is always on: the token endpoint binds
// a token to the key of a request's proof, and every oauth2_guard of the
// app checks the proofs of bound tokens, ours and other issuers'. One
// verifier per app serves both, so a proof's jti is refused at either
// after its first use on this gateway.
type DPoP struct {
	// Nonce makes the token endpoint and the guards demand a server nonce
	// in every proof (RFC 9449 §8, §9), answered use_dpop_nonce with a
	// DPoP-Nonce header. Nonces are an HMAC of a 5-minute window under a key
	// derived from token_secret, so every gateway sharing the secret
	// accepts every other's. It closes the replay of a proof at another
	// gateway within the proof lifetime. Default: false.
	Nonce bool `json:"nonce,omitempty"`
	// Required makes the token endpoint refuse every token request without
	// a proof, as a client's dpop_bound_access_tokens does for one client.
	// Default: false.
	Required bool `json:"required,omitempty"`
	// ProofLifetime is how old a proof's iat may be (10 s of clock skew
	// are tolerated on top). Default: 60s.
	ProofLifetime caddy.Duration `json:"proof_lifetime,omitempty"`
	// Algs are the accepted proof signing algorithms, all asymmetric:
	// ES256, ES384, ES512, EdDSA, RS256, RS384, RS512, PS256, PS384, PS512.
	// Default: ES256 ES384 EdDSA RS256 PS256.
	Algs []string `json:"algs,omitempty"`
	// ReplayCacheSize bounds the jti values remembered per gateway over
	// the proof lifetime, about 60 bytes each; when it is full of live
	// entries, new proofs are refused rather than a jti forgotten.
	// Default: 1048576.
	ReplayCacheSize int `json:"replay_cache_size,omitempty"`
}

// validate checks the options.
func (d *DPoP) validate() error {
	if d.ProofLifetime < 0 || d.ReplayCacheSize < 0 {
		return fmt.Errorf("dpop: proof_lifetime and replay_cache_size must not be negative")
	}
	if d.ProofLifetime != 0 && time.Duration(d.ProofLifetime) < time.Second {
		return fmt.Errorf("dpop: proof_lifetime %v must be at least 1s", time.Duration(d.ProofLifetime))
	}
	for _, a := range d.Algs {
		if !dpop.SupportedAlg(a) {
			return fmt.Errorf("dpop: algorithm %q is not an asymmetric JWS algorithm this server verifies", a)
		}
	}
	return nil
}

// provisionDPoP builds the app's verifier.
func (a *App) provisionDPoP(secret []byte) error {
	cfg := a.DPoP
	if cfg == nil {
		cfg = new(DPoP)
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	v := &dpop.Verifier{
		Algs:     cfg.Algs,
		Lifetime: time.Duration(cfg.ProofLifetime),
		Replay:   dpop.NewReplayCache(cfg.ReplayCacheSize, 0),
		Observe:  a.metrics.dpopProof,
	}
	if cfg.Nonce {
		v.Nonces = dpop.NewNonces(token.DeriveKey(secret, token.PurposeDPoPNonce), 0)
	}
	a.dpop = v
	return nil
}

// requestURL is the URL the client used, for a DPoP proof's htu (RFC 9449
// §4.3): the original request's, before any rewrite, with the scheme and
// host of X-Forwarded-Proto and X-Forwarded-Host when Caddy's
// trusted_proxies vouch for the connection.
func requestURL(r *http.Request) *url.URL {
	u := r.URL
	if o, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && o.URL != nil {
		u = o.URL // the path before any rewrite
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			host = h
		}
	}
	return &url.URL{Scheme: scheme, Host: host, Path: u.Path, RawPath: u.RawPath}
}

// firstValue is the first of a comma-separated header's values: the one
// the proxy nearest the client set.
func firstValue(v string) string {
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// unmarshalDPoP reads the app's dpop block:
//
//	dpop {
//		nonce
//		required
//		proof_lifetime <duration>
//		algs <alg>...
//		replay_cache_size <n>
//	}
func unmarshalDPoP(d *caddyfile.Dispenser) (*DPoP, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := new(DPoP)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("duplicate subdirective %q in dpop", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "nonce":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			c.Nonce = true
		case "required":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			c.Required = true
		case "proof_lifetime":
			err = oneDurationAtLeast(d, &c.ProofLifetime, time.Second)
		case "algs":
			c.Algs, err = someStrings(d)
		case "replay_cache_size":
			var n int64
			err = oneInt(d, &n)
			c.ReplayCacheSize = int(n)
		default:
			return nil, d.Errf("unrecognized subdirective %q in dpop", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := c.validate(); err != nil {
		return nil, d.Err(err.Error())
	}
	return c, nil
}
