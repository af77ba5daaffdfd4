package oauth2

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/validator"
)

// The access token formats.
const (
	formatOpaque = "opaque"
	formatJWT    = "jwt"
)

// defaultJWTRevocationCheck is JWTRevocationCheck's default.
const defaultJWTRevocationCheck = 30 * time.Second

// provisionJWT builds the key ring of JWT access tokens and OpenID Connect
// ID tokens: from the signing_key files, or over the token store, which
// must then be able to keep keys. With OpenID Connect and no RSA
// signing_key, an RSA key is generated beside the P-256 one (OpenID
// Connect Discovery §3 requires RS256 for ID tokens).
func (a *App) provisionJWT(repl *caddy.Replacer, secret []byte) error {
	switch a.AccessTokenFormat {
	case "", formatOpaque:
		if a.OIDC == nil {
			if len(a.SigningKeys) > 0 {
				return errors.New("signing_key is only used with access_token_format jwt or oidc")
			}
			return nil
		}
	case formatJWT:
		a.jwtAccess = true
	default:
		return fmt.Errorf("access_token_format: want opaque or jwt, got %q", a.AccessTokenFormat)
	}
	cfg := jwt.RingConfig{
		Rotation:      time.Duration(a.SigningKeyRotation),
		TokenLifetime: time.Duration(a.AccessTokenLifetime),
		Logger:        a.logger.Named("jwt"),
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = time.Hour // the issuer's default
	}
	if a.OIDC != nil {
		cfg.TokenLifetime = max(cfg.TokenLifetime, time.Duration(a.OIDC.IDTokenLifetime), time.Hour)
	}
	hasRSA := false
	for _, f := range a.SigningKeys {
		path := repl.ReplaceAll(f, "")
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("signing_key: %v", err)
		}
		k, err := jwt.ParsePEM(b)
		if err != nil {
			return fmt.Errorf("signing_key %s: %v", path, err)
		}
		hasRSA = hasRSA || k.Alg == jose.RS256
		cfg.Keys = append(cfg.Keys, k)
	}
	if len(cfg.Keys) == 0 {
		cfg.Generate = append(cfg.Generate, jose.ES256)
	}
	if a.OIDC != nil && !hasRSA {
		cfg.Generate = append(cfg.Generate, jose.RS256)
	}
	if len(cfg.Generate) > 0 {
		if a.keyStore == nil {
			return errors.New("access_token_format jwt and oidc: the access_token_store cannot keep signing keys; " +
				"give signing_key files (an RSA one for oidc) or use a store that can (cache, sql, cassandra)")
		}
		if a.TokenSecret == "" {
			a.logger.Warn("no token_secret configured: generated JWT signing keys are sealed with a random secret " +
				"and cannot be opened by another process or after a restart")
		}
		cfg.Store, cfg.Sealer = a.keyStore, jwt.NewSealer(secret)
	}
	var err error
	a.ring, err = jwt.NewRing(cfg)
	return err
}

// issuingRing is the ring the issuer signs access tokens with: nil for
// opaque tokens.
func (a *App) issuingRing() *jwt.Ring {
	if !a.jwtAccess {
		return nil
	}
	return a.ring
}

// validationCacheTTL is how long token lookups are kept in memory: the
// validation_cache, or, for JWT access tokens over a remote store, the
// jwt_revocation_check, so that the guard reads no store on the hot path.
func (a *App) validationCacheTTL() time.Duration {
	if a.ValidationCache > 0 || !a.jwtAccess || a.tokensInProcess {
		return time.Duration(a.ValidationCache)
	}
	if a.JWTRevocationCheck > 0 {
		return time.Duration(a.JWTRevocationCheck)
	}
	return defaultJWTRevocationCheck
}

// ownIssuer reports whether iss is an issuer identifier of this app: the
// configured one, or one derived from the address of a site serving
// oauth2_server.
func (a *App) ownIssuer(iss string) bool {
	if a.Issuer != "" {
		return iss == a.Issuer
	}
	for _, s := range a.derived {
		if s.ctx.Context == nil || s.resolveOrigins() != nil {
			continue
		}
		for _, o := range s.origins {
			if o.issuer == iss {
				return true
			}
		}
	}
	return false
}

// jwtSources returns the guard's source of the app's JWT access tokens,
// none when the app issues opaque ones.
func (g *Guard) jwtSources(app *App) ([]validator.Source, error) {
	if !app.jwtAccess {
		return nil, nil
	}
	accepts := func(aud string) bool { return slices.Contains(g.Audience, aud) }
	switch {
	case len(g.Audience) > 0:
	case app.Audience != "":
		accepts = func(aud string) bool { return aud == app.Audience }
	default:
		accepts = app.ownIssuer // the issuer's default audience
	}
	src, err := validator.NewJWTSource(validator.JWTConfig{
		Ring:     app.ring,
		Issuer:   app.ownIssuer,
		Audience: accepts,
		Tokens:   app.tokens,
		Hasher:   app.hasher,
	})
	if err != nil {
		return nil, err
	}
	return []validator.Source{src}, nil
}

// opaqueAudience returns the guard's audience check of the app's opaque
// access tokens, the same rule its JWT source applies to "aud": a token
// passes when it is for one of the guard's audiences or, for a guard
// without any, for the app's default audience. A token stored without an
// audience is for the default audience (see issuer/resource.go).
func (g *Guard) opaqueAudience(app *App) func([]string) bool {
	isDefault := app.ownIssuer // the issuer is the default audience
	if app.Audience != "" {
		isDefault = func(aud string) bool { return aud == app.Audience }
	}
	if len(g.Audience) == 0 {
		return func(aud []string) bool { return aud == nil || slices.ContainsFunc(aud, isDefault) }
	}
	accepted := slices.Clone(g.Audience)
	return func(aud []string) bool {
		if aud == nil {
			return slices.ContainsFunc(accepted, isDefault)
		}
		for _, a := range aud {
			if slices.Contains(accepted, a) {
				return true
			}
		}
		return false
	}
}

// claimsPrefix names the placeholders of a JWT's claims.
const claimsPrefix = "oauth2.claims."

// claimString converts a claim for {oauth2.claims.<name>} (see
// grantPlaceholders), only when a placeholder asks: strings as they are,
// whole numbers without exponent, lists joined by commas, objects as JSON.
func claimString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = claimString(e)
		}
		return strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}
