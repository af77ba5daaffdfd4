// Package oauth2 plugs an OAuth 2.0 authorization server and a bearer-token
// guard into Caddy.
//
// The app `oauth2` holds the clients, lifetimes and stores and runs the
// purger; the handler `oauth2_server` serves the endpoints of package issuer;
// the handler `oauth2_guard` admits requests that package validator accepts.
// This package only translates Caddy configuration and lifecycle into those
// Caddy-free packages.
package oauth2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/dpop"
	"github.com/tokengate/caddy-oauth2/fetch"
	"github.com/tokengate/caddy-oauth2/issuer"
	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/purge"
	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/cache"
	_ "github.com/tokengate/caddy-oauth2/stores/cassandra"
	"github.com/tokengate/caddy-oauth2/stores/lookupcache"
	_ "github.com/tokengate/caddy-oauth2/stores/sql"
	"github.com/tokengate/caddy-oauth2/token"
	"github.com/tokengate/caddy-oauth2/validator"
)

func init() {
	caddy.RegisterModule(new(App))
	caddy.RegisterModule(new(Server))
	caddy.RegisterModule(new(Guard))
}

// App is the `oauth2` app: what the authorization server issues and where it
// keeps it. The handlers find it through the Caddy context.
type App struct {
	// Issuer is the authorization server's issuer identifier (RFC 8414 §2),
	// an https URL without query or fragment. Default: derived from the
	// address of the site serving oauth2_server (its host and port, https
	// when it has TLS), never from the Host header; Caddy refuses to start
	// when that is ambiguous (see origins.go).
	Issuer string `json:"issuer,omitempty"`

	// TokenSecret keys the HMAC under which codes and tokens are stored.
	// Placeholders such as {env.OAUTH2_TOKEN_SECRET} are replaced. Default: a
	// random secret per process, with a warning, since a restart then
	// invalidates every token in a persistent store.
	TokenSecret string `json:"token_secret,omitempty"`

	// AccessTokenStoreRaw holds access and refresh tokens. Default: the cache
	// store.
	AccessTokenStoreRaw json.RawMessage `json:"access_token_store,omitempty" caddy:"namespace=oauth2.stores inline_key=driver"`

	// AuthorizationCodeStoreRaw holds authorization codes. Default: the cache
	// store.
	AuthorizationCodeStoreRaw json.RawMessage `json:"authorization_code_store,omitempty" caddy:"namespace=oauth2.stores inline_key=driver"`

	// PurgeEvery is how often expired codes and tokens are removed from both
	// stores. Default: 60s.
	PurgeEvery caddy.Duration `json:"purge_every,omitempty"`

	// PurgeBatch is how many rows the first purge statement of a run
	// removes; a SQL store other than MariaDB/MySQL grows later batches,
	// up to 100 times, while the guard's lookups stay fast. Default: 1000.
	PurgeBatch int `json:"purge_batch,omitempty"`

	// AuthorizationCodeLifetime is how long a code may be redeemed.
	// Default: 600s.
	AuthorizationCodeLifetime caddy.Duration `json:"authorization_code_lifetime,omitempty"`

	// AccessTokenLifetime is how long an access token passes the guard.
	// Default: 3600s.
	AccessTokenLifetime caddy.Duration `json:"access_token_lifetime,omitempty"`

	// RefreshTokenLifetime is how long a refresh token may be used.
	// Default: 43200s.
	RefreshTokenLifetime caddy.Duration `json:"refresh_token_lifetime,omitempty"`

	// RequirePKCE demands PKCE (S256) of confidential clients too; public
	// clients always need it. Default: false.
	RequirePKCE bool `json:"require_pkce,omitempty"`

	// StoreTimeout bounds every store call; past it the request is answered
	// 503. Default: 2s.
	StoreTimeout caddy.Duration `json:"store_timeout,omitempty"`

	// ValidationCache, when positive, keeps positive access-token lookups in
	// memory for at most this long, so the guard skips a remote store. A
	// revocation through this process takes effect at once; one through
	// another gateway takes up to this long. At most 100,000 tokens are kept.
	// Default: 0 (off).
	ValidationCache caddy.Duration `json:"validation_cache,omitempty"`

	// RevocationFeedInterval is how often the validation cache reads the
	// token store's revocation feed (SQL and Cassandra stores), where every
	// gateway sharing the store publishes what it revokes: a revocation
	// through any gateway then stops the token on all of them within two
	// intervals, or their caches stop answering. Only with
	// validation_cache. Default: 500ms.
	RevocationFeedInterval caddy.Duration `json:"revocation_feed_interval,omitempty"`

	// RevocationFeedOff leaves the feed alone: one gateway alone, or
	// revocations through other gateways acceptable after validation_cache.
	// Default: false.
	RevocationFeedOff bool `json:"revocation_feed_off,omitempty"`

	// MaxBodySize is the largest request body the endpoints read, in bytes;
	// a larger one is answered 413. Default: 65536.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// ScopeDescriptions are human descriptions of scopes, by scope, shown
	// on the consent page above the raw scope name. Default: none.
	ScopeDescriptions map[string]string `json:"scope_descriptions,omitempty"`

	// ConsentTemplate is the path of an html/template file rendering the
	// consent page instead of the built-in one (see the README for the data
	// it gets). Placeholders are replaced. Default: the built-in page.
	ConsentTemplate string `json:"consent_template,omitempty"`
	// MaxSecretVerifications caps the client-secret bcrypt checks running at
	// once; a request that finds no free slot within 1s is answered 503
	// temporarily_unavailable. Default: half the CPUs Go uses
	// (GOMAXPROCS/2), at least 1.
	MaxSecretVerifications int `json:"max_secret_verifications,omitempty"`

	// AccessTokenFormat is "opaque" (random tokens looked up in the store)
	// or "jwt" (RFC 9068 JWTs signed with the signing keys, their jti kept
	// in the store for revocation). Default: "opaque".
	AccessTokenFormat string `json:"access_token_format,omitempty"`

	// Audience is the "aud" of JWT access tokens whose request named no
	// registered resource (RFC 8707), and the audience oauth2_guard
	// accepts by default. Default: the issuer identifier.
	Audience string `json:"audience,omitempty"`

	// SigningKeys are PEM files of private keys (Ed25519, ECDSA P-256 or
	// RSA of 2048 bits or more) for JWT access tokens: the first signs,
	// the others are published for the tokens they signed. Placeholders
	// are replaced. Default: keys are generated, kept encrypted in the
	// access token store and rotated every signing_key_rotation.
	SigningKeys []string `json:"signing_keys,omitempty"`

	// SigningKeyRotation is how long a generated signing key signs before
	// a new one is made; retired keys stay published until the tokens they
	// signed have expired. Default: 720h.
	SigningKeyRotation caddy.Duration `json:"signing_key_rotation,omitempty"`

	// JWTRevocationCheck bounds how long a revoked JWT access token may
	// still pass oauth2_guard when the token store has no revocation feed
	// (or revocation_feed is off) and validation_cache is not set: the
	// guard rechecks each token's jti in the store this often. With the
	// feed, a revocation is refused everywhere within two feed intervals;
	// with the cache store, at once. Default: 30s.
	JWTRevocationCheck caddy.Duration `json:"jwt_revocation_check,omitempty"`

	// RequirePushedAuthorizationRequests makes every client push its
	// authorization requests to /oauth2/par (RFC 9126 §5) and refuses
	// others. Default: false; a client's own option asks it of that client.
	RequirePushedAuthorizationRequests bool `json:"require_pushed_authorization_requests,omitempty"`

	// Profile turns on a security profile. "fapi2" is the FAPI 2.0
	// Security Profile: pushed authorization requests and PKCE S256
	// required, confidential clients only with private_key_jwt,
	// DPoP-bound access tokens, authorization codes of at most 60s (the
	// default then), iss in the authorization response; a client
	// configuration that contradicts it is refused at load. Default: none.
	Profile string `json:"profile,omitempty"`

	// Clients are the OAuth clients of the configuration. Clients can also
	// be registered at runtime, through the admin API or by dynamic
	// registration, when the access token store keeps them (see
	// clients.go); those cannot take the ID of a configured client.
	Clients []*Client `json:"clients,omitempty"`

	// Registration turns on dynamic client registration (RFC 7591, RFC
	// 7592) at /oauth2/register. Default: off.
	Registration *Registration `json:"registration,omitempty"`

	// Resources are resource indicators (RFC 8707) that every client may
	// name at the authorization and token endpoints, besides its own
	// resources; the resource of every oauth2_guard in the configuration
	// is added to them. Default: none.
	Resources []string `json:"resources,omitempty"`

	// ClientIDMetadataDocuments turns on client ID metadata documents: a
	// client_id that is an https URL names the client's metadata (see
	// resource.go). Default: off.
	ClientIDMetadataDocuments *ClientIDMetadataDocuments `json:"client_id_metadata_documents,omitempty"`
	// OIDC turns on OpenID Connect (see oidc.go). Default: off.
	OIDC *OIDC `json:"oidc,omitempty"`
	// DPoP tunes sender-constrained tokens (RFC 9449, see dpop.go), which
	// are always on. Default: no nonces, proofs optional, 60s proofs.
	DPoP *DPoP `json:"dpop,omitempty"`

	codes   stores.CodeStore
	tokens  stores.TokenStore
	starts  []stores.Starter
	gates   []*stores.Gate
	hasher  *token.Hasher
	csrfKey []byte
	clients map[string]*issuer.Client
	// clientScopes is each client's current scope set, for the guard.
	clientScopes map[string]map[string]bool
	purger       *purge.Purger
	logger       *zap.Logger
	metrics      *metrics
	caches       []*cache.Engine
	consent      *template.Template
	// limits are the brute-force limits of client authentication, shared
	// by every oauth2_server of this configuration.
	limits *issuer.Limits
	// viaHandler is set when a handler's provisioning loaded the app (see
	// oauth2App).
	viaHandler bool
	// derived are the oauth2_server handlers whose issuer comes from their
	// site's address; Start checks each has one.
	derived []*Server

	tokenFeed stores.RevocationFeed // the token store's, if it has one
	// Clients registered at runtime, kept by the token store (see
	// clients.go).
	clientStore  stores.ClientRegistry
	registry     *issuer.Registry
	registration *issuer.Registration
	follower     *lookupcache.Follower
	// resources are the app-wide resources, the guards' among them.
	resources *issuer.Resources
	// cimd and cimdScopes are the client ID metadata documents' settings.
	cimd       *issuer.MetadataDocuments
	cimdScopes map[string]bool

	// JWT access tokens, see jwt.go.
	keyStore        stores.KeyStore // the token store's, if it can keep keys
	tokensInProcess bool
	ring            *jwt.Ring // access tokens (jwtAccess) and ID tokens
	jwtAccess       bool

	pairwiseKey []byte // OpenID Connect pairwise subjects, see oidc.go

	// dpop checks DPoP proofs for the token endpoint and every guard.
	dpop *dpop.Verifier
}

// Client is a registered OAuth client.
type Client struct {
	// ID is the client_id.
	ID string `json:"id"`
	// SecretHash is the bcrypt hash of the client secret, as
	// `caddy hash-password` prints it. Placeholders are replaced. Absent: a
	// public client, which must use PKCE S256.
	SecretHash string `json:"secret_hash,omitempty"`
	// RedirectURIs are the exact redirect URIs the client may use.
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// GrantTypes the client may use: authorization_code, refresh_token,
	// client_credentials. Default: authorization_code and refresh_token,
	// plus client_credentials for a confidential client.
	GrantTypes []string `json:"grant_types,omitempty"`
	// Scopes the client may be granted; a request naming none gets all.
	Scopes []string `json:"scopes,omitempty"`
	// SkipConsent issues codes without showing the consent page.
	SkipConsent bool `json:"skip_consent,omitempty"`
	// Introspect lets the client introspect access tokens of other clients,
	// as a resource server does (RFC 7662 §4). Without it a client sees only
	// its own tokens. Refresh tokens are only ever visible to their own
	// client. Default: false.
	Introspect bool `json:"introspect,omitempty"`
	// Name is the client's display name on the consent page. Default: its
	// ID.
	Name string `json:"name,omitempty"`
	// LogoURI is an https URL of the client's logo on the consent page.
	// Default: none.
	LogoURI string `json:"logo_uri,omitempty"`
	// Resources are the resource indicators (RFC 8707) the client may name
	// in a token request's resource parameter; they become the "aud" of its
	// JWT access tokens. Default: none.
	Resources []string `json:"resources,omitempty"`
	// PostLogoutRedirectURIs are where the logout endpoint may send the
	// user back after an RP-initiated logout (OpenID Connect RP-Initiated
	// Logout 1.0), compared exactly. Default: none, the endpoint shows its
	// own signed-out page.
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris,omitempty"`
	// IDTokenSignedResponseAlg is the algorithm of the client's ID tokens
	// (OpenID Connect Registration §2): RS256, ES256 or EdDSA. Default:
	// RS256.
	IDTokenSignedResponseAlg string `json:"id_token_signed_response_alg,omitempty"`
	// TokenEndpointAuthMethod is how the client authenticates (RFC 7591
	// §2): none, client_secret_basic, client_secret_post or
	// private_key_jwt (RFC 7523). Default: client_secret_basic with a
	// secret_hash (client_secret_post is accepted too), private_key_jwt
	// with jwks_uri or jwks, none otherwise.
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// JWKSURI is the https URL of the client's public keys, which verify
	// its private_key_jwt assertions. Default: none.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// JWKS is the path of a file holding the client's public keys as a
	// JWK Set, for private_key_jwt; exclusive with jwks_uri. Placeholders
	// are replaced. Default: none.
	JWKS string `json:"jwks,omitempty"`
	// RequirePushedAuthorizationRequests makes this client push its
	// authorization requests to /oauth2/par (RFC 9126 §6). Default: false.
	RequirePushedAuthorizationRequests bool `json:"require_pushed_authorization_requests,omitempty"`
	// DPoPBoundAccessTokens makes the token endpoint refuse the client's
	// token requests without a DPoP proof (RFC 9449 §5.2). Default: false.
	DPoPBoundAccessTokens bool `json:"dpop_bound_access_tokens,omitempty"`
}

// issuerClient is the client as package issuer takes it, its secret hash
// passed through secret (which replaces placeholders) and its jwks file
// read by readJWKS.
func (c *Client) issuerClient(secret func(string) string, readJWKS func(path string) ([]byte, error)) (*issuer.Client, error) {
	ic := &issuer.Client{
		AuthMethod:   c.TokenEndpointAuthMethod,
		JWKSURI:      c.JWKSURI,
		RequirePAR:   c.RequirePushedAuthorizationRequests,
		ID:           c.ID,
		RedirectURIs: c.RedirectURIs,
		GrantTypes:   c.GrantTypes,
		Scopes:       c.Scopes,
		SkipConsent:  c.SkipConsent,
		Introspect:   c.Introspect,
		Name:         c.Name,
		LogoURI:      c.LogoURI,
		Resources:    c.Resources,

		PostLogoutRedirectURIs:   c.PostLogoutRedirectURIs,
		IDTokenSignedResponseAlg: c.IDTokenSignedResponseAlg,
		DPoPBoundAccessTokens:    c.DPoPBoundAccessTokens,
	}
	if h := secret(c.SecretHash); h != "" {
		ic.SecretHash = []byte(h)
	}
	if c.JWKS != "" {
		b, err := readJWKS(c.JWKS)
		if err != nil {
			return nil, fmt.Errorf("client %q: jwks: %v", c.ID, err)
		}
		ic.JWKS = b
	}
	return ic, nil
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "oauth2", New: func() caddy.Module { return new(App) }}
}

// validationCacheEntries bounds the validation cache: 100,000 tokens take
// some 30 MB.
const validationCacheEntries = 100_000

// processSecret is the fallback token secret: one per process, so a reload
// keeps tokens in the cache store valid.
var processSecret = sync.OnceValues(token.RandomSecret)

// Provision loads the stores and prepares the shared key material.
func (a *App) Provision(ctx caddy.Context) error {
	a.viaHandler = ctx.Value(viaHandlerKey{}) != nil
	if err := a.provision(ctx); err != nil {
		if a.viaHandler {
			// Caddy keeps this error for its own load of the app, which
			// then lacks the prefix its direct load adds: add it here, so
			// the message is the same whichever loaded the app first.
			return fmt.Errorf("provision oauth2: %w", err)
		}
		return err
	}
	return nil
}

func (a *App) provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if a.PurgeEvery == 0 {
		a.PurgeEvery = caddy.Duration(60 * time.Second)
	}
	if a.PurgeBatch == 0 {
		a.PurgeBatch = 1000
	}
	if a.StoreTimeout == 0 {
		a.StoreTimeout = caddy.Duration(2 * time.Second)
	}

	repl := caddy.NewReplacer()
	secret := []byte(repl.ReplaceAll(a.TokenSecret, ""))
	if len(secret) == 0 {
		var err error
		if secret, err = processSecret(); err != nil {
			return fmt.Errorf("generating token secret: %v", err)
		}
		a.logger.Warn("no token_secret configured: using a random one for this process; " +
			"tokens in persistent stores stop validating when Caddy restarts")
	} else if len(secret) < 32 {
		return errors.New("token_secret must be at least 32 bytes")
	}
	a.hasher = token.NewHasher(secret)
	a.csrfKey = token.DeriveKey(secret, token.PurposeCSRF)

	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var err error
	if a.metrics, err = newMetrics(reg); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}

	codes, err := a.loadStore(ctx, "AuthorizationCodeStoreRaw", a.AuthorizationCodeStoreRaw, "authorization_code_store")
	if err != nil {
		return fmt.Errorf("loading authorization_code_store: %v", err)
	}
	tokens, err := a.loadStore(ctx, "AccessTokenStoreRaw", a.AccessTokenStoreRaw, "access_token_store")
	if err != nil {
		return fmt.Errorf("loading access_token_store: %v", err)
	}
	a.codes, a.tokens = codes, tokens
	if err := a.provisionOIDC(secret); err != nil {
		return err
	}
	if err := a.provisionDPoP(secret); err != nil {
		return err
	}
	if err := a.provisionJWT(repl, secret); err != nil {
		return err
	}
	if ttl := a.validationCacheTTL(); ttl > 0 {
		vc := lookupcache.New(tokens, ttl, validationCacheEntries)
		a.tokens = vc
		if err := a.registerValidationCacheMetrics(vc); err != nil {
			return err
		}
		if a.tokenFeed != nil && !a.RevocationFeedOff {
			a.follower = lookupcache.NewFollower(vc, a.tokenFeed, time.Duration(a.RevocationFeedInterval), a.logger.Named("revocation_feed"))
			a.tokens = a.follower
		}
	}
	if err := a.registerCacheMetrics(); err != nil {
		return err
	}

	a.clients = make(map[string]*issuer.Client, len(a.Clients))
	a.clientScopes = make(map[string]map[string]bool, len(a.Clients))
	for _, c := range a.Clients {
		if _, dup := a.clients[c.ID]; dup {
			return fmt.Errorf("client %q is defined twice", c.ID)
		}
		ic, err := c.issuerClient(func(s string) string { return repl.ReplaceAll(s, "") },
			func(path string) ([]byte, error) { return os.ReadFile(repl.ReplaceAll(path, "")) })
		if err != nil {
			return err
		}
		a.clients[c.ID] = ic
		scopes := make(map[string]bool, len(c.Scopes))
		for _, sc := range c.Scopes {
			scopes[sc] = true
		}
		a.clientScopes[c.ID] = scopes
	}

	if path := repl.ReplaceAll(a.ConsentTemplate, ""); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("consent_template: %v", err)
		}
		if a.consent, err = template.New(issuer.ConsentTemplateName).Parse(string(b)); err != nil {
			return fmt.Errorf("consent_template %s: %v", path, err)
		}
	}

	if err := a.provisionRegistry(repl); err != nil {
		return err
	}
	if err := a.provisionResources(repl); err != nil {
		return err
	}

	a.limits = issuer.NewLimits(a.MaxSecretVerifications, 0)
	if err := a.registerAuthMetrics(); err != nil {
		return err
	}

	a.purger = &purge.Purger{
		Interval: time.Duration(a.PurgeEvery),
		Batch:    a.PurgeBatch,
		Codes:    a.codes,
		Tokens:   tokens,
		Logger:   a.logger.Named("purge"),
		Observe:  a.metrics.purgeDone,
	}
	if su, ok := stores.SingleUseOf(a.codes); ok {
		a.purger.Once = su
		a.purger.ObserveOnce = a.metrics.purgeOnceDone
	}
	return nil
}

// loadStore loads one store guest module, the cache store when none is
// configured.
func (a *App) loadStore(ctx caddy.Context, field string, raw json.RawMessage, label string) (stores.Store, error) {
	var mod any
	var err error
	if raw == nil {
		mod, err = ctx.LoadModuleByID("oauth2.stores.cache", json.RawMessage(`{}`))
	} else {
		mod, err = ctx.LoadModule(a, field)
	}
	if err != nil {
		return nil, err
	}
	s, ok := mod.(stores.Store)
	if !ok {
		return nil, fmt.Errorf("module %T is not a store", mod)
	}
	if cs, ok := mod.(*cache.Store); ok && !slices.Contains(a.caches, cs.Engine) {
		a.caches = append(a.caches, cs.Engine)
	}
	if f, ok := mod.(stores.RevocationFeed); ok && field == "AccessTokenStoreRaw" {
		a.tokenFeed = f
	}
	if field == "AccessTokenStoreRaw" {
		a.keyStore, _ = mod.(stores.KeyStore)
		a.clientStore, _ = mod.(stores.ClientRegistry)
		_, a.tokensInProcess = mod.(stores.InProcess)
	}
	s = a.metrics.observe(s, label)
	st, ok := mod.(stores.Starter)
	if !ok {
		return s, nil
	}
	// Requests wait until Start has checked the backend (see Gate).
	gate := stores.NewGate(s)
	a.starts = append(a.starts, st)
	a.gates = append(a.gates, gate)
	return gate, nil
}

// Validate checks the configuration.
func (a *App) Validate() error {
	err := a.validate()
	if err != nil && a.viaHandler {
		return fmt.Errorf("oauth2: invalid configuration: %w", err) // see Provision
	}
	return err
}

func (a *App) validate() error {
	if a.Issuer != "" && (!strings.HasPrefix(a.Issuer, "https://") && !strings.HasPrefix(a.Issuer, "http://") ||
		strings.ContainsAny(a.Issuer, "?#")) {
		return fmt.Errorf("issuer %q must be an http(s) URL without query or fragment (RFC 8414 §2)", a.Issuer)
	}
	if a.PurgeEvery < 0 || a.PurgeBatch < 0 || a.StoreTimeout < 0 || a.ValidationCache < 0 || a.MaxBodySize < 0 || a.RevocationFeedInterval < 0 ||
		a.SigningKeyRotation < 0 || a.JWTRevocationCheck < 0 ||
		a.AuthorizationCodeLifetime < 0 || a.AccessTokenLifetime < 0 || a.RefreshTokenLifetime < 0 {
		return errors.New("durations, sizes and counts must not be negative")
	}
	if a.MaxSecretVerifications < 0 {
		return errors.New("max_secret_verifications must not be negative")
	}
	if len(a.Clients) == 0 && a.registry == nil && a.cimd == nil {
		// Only guards, of other servers' tokens: an oauth2_server still
		// refuses to provision without clients.
		return nil
	}
	// Building an issuer checks every client the way the server will use it.
	_, err := a.newIssuer(nil, nil)
	return err
}

// Start checks that every oauth2_server without an issuer has one from its
// site, checks the stores' backends and starts the purger. A backend that
// cannot be reached does not stop Caddy: requests needing it are answered
// 503 until it returns. A wrong schema or setting does.
func (a *App) Start() error {
	for _, s := range a.derived {
		if err := s.resolveOrigins(); err != nil {
			return err
		}
	}
	for _, s := range a.starts {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.Start(ctx)
		cancel()
		if errors.Is(err, stores.ErrUnavailable) {
			a.logger.Error("store unreachable at start; answering 503 until it returns", zap.Error(err))
		} else if err != nil {
			return err
		}
	}
	for _, g := range a.gates {
		g.Open()
	}
	if a.follower != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := a.follower.Start(ctx)
		cancel()
		if err != nil {
			return err
		}
	}
	if a.ring != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := a.ring.Start(ctx)
		cancel()
		if err != nil {
			return err
		}
	}
	if err := a.startRegistry(); err != nil {
		return err
	}
	a.purger.Start()
	return nil
}

// Stop stops the purger and the revocation feed follower and waits for
// them to end.
func (a *App) Stop() error {
	a.purger.Stop()
	if a.follower != nil {
		a.follower.Stop()
	}
	if a.ring != nil {
		a.ring.Stop()
	}
	if a.registry != nil {
		a.registry.Stop()
	}
	return nil
}

// revokeSubject revokes everything of a resource owner and/or a client in
// both stores (once when they are the same).
func (a *App) revokeSubject(ctx context.Context, subject, clientID string) (int64, error) {
	until := time.Now().Add(issuer.FamilyMarkerLifetime(time.Duration(a.AccessTokenLifetime),
		time.Duration(a.RefreshTokenLifetime), time.Duration(a.StoreTimeout)))
	var total int64
	for _, s := range []any{a.tokens, a.codes} {
		sr, ok := s.(stores.SubjectRevoker)
		if !ok {
			return total, stores.ErrUnsupported
		}
		n, err := sr.RevokeSubject(ctx, subject, clientID, until)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// newIssuer builds the authorization server over this app's configuration.
func (a *App) newIssuer(subject, issuerFor func(*http.Request) string) (*issuer.Server, error) {
	return issuer.New(issuer.Config{
		Issuer:               a.Issuer,
		IssuerFor:            issuerFor,
		Clients:              a.clients,
		Registry:             a.registry,
		Registration:         a.registration,
		Codes:                a.codes,
		Tokens:               a.tokens,
		Hasher:               a.hasher,
		CodeLifetime:         time.Duration(a.AuthorizationCodeLifetime),
		AccessTokenLifetime:  time.Duration(a.AccessTokenLifetime),
		RefreshTokenLifetime: time.Duration(a.RefreshTokenLifetime),
		RequirePKCE:          a.RequirePKCE,
		MaxBodyBytes:         a.MaxBodySize,
		StoreTimeout:         time.Duration(a.StoreTimeout),
		Subject:              subject,
		CSRFKey:              a.csrfKey,
		Logger:               a.logger,
		Observer:             a.metrics,
		ScopeDescriptions:    a.ScopeDescriptions,
		ConsentTemplate:      a.consent,
		JWT:                  a.issuingRing(),
		Audience:             a.Audience,
		Resources:            a.resources,
		MetadataDocuments:    a.cimd,
		OIDC:                 a.issuerOIDC(),
		RequirePAR:           a.RequirePushedAuthorizationRequests,
		Profile:              a.Profile,
		DPoP:                 a.dpop,
		RequireDPoP:          a.DPoP != nil && a.DPoP.Required,

		// Brute-force limits, shared by every handler of this app, and log
		// redaction.
		Limits:     a.limits,
		ClientIP:   clientIP,
		Unredacted: skipAccessLog,
	})
}

// clientIP is the address failed client authentications are counted
// under: Caddy's client_ip, which is the connection's address unless
// trusted_proxies vouches for a forwarded one.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// skipAccessLog keeps a request out of Caddy's access log: the issuer calls
// it when a buffering handler kept it from redacting the code in a redirect.
func skipAccessLog(r *http.Request) {
	caddyhttp.SetVar(r.Context(), caddyhttp.LogSkipVar, true)
}

// Server is the `oauth2_server` handler: the authorization, token,
// revocation, introspection and metadata endpoints of the `oauth2` app.
// Requests to other paths go to the next handler.
//
// The resource owner of an authorization request is Caddy's authenticated
// user, {http.auth.user.id}: put an authentication handler such as
// basic_auth before this one on /oauth2/authorize.
type Server struct {
	srv *issuer.Server

	// Without an app issuer: the candidates from the site's address, see
	// origins.go, resolved once the http app is provisioned.
	ctx         caddy.Context
	originsOnce sync.Once
	origins     []siteOrigin
	originsErr  error
}

// CaddyModule returns the Caddy module information.
func (*Server) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.oauth2_server", New: func() caddy.Module { return new(Server) }}
}

// Provision builds the endpoints over the app's configuration.
func (s *Server) Provision(ctx caddy.Context) error {
	app, err := oauth2App(ctx)
	if errors.Is(err, errAppNotLoaded) {
		return nil // Caddy reports the app's own error (see errAppNotLoaded)
	}
	if err != nil {
		return err
	}
	var issuerFor func(*http.Request) string
	if app.Issuer == "" {
		s.ctx = ctx
		issuerFor = func(r *http.Request) string { return pickOrigin(s.origins, r) }
		app.derived = append(app.derived, s)
	}
	s.srv, err = app.newIssuer(authenticatedUser, issuerFor)
	return err
}

// resolveOrigins finds the handler's site in the http app, once: at the
// app's Start, or at the first request if that comes first.
func (s *Server) resolveOrigins() error {
	s.originsOnce.Do(func() {
		var httpApp any
		if httpApp, s.originsErr = s.ctx.App("http"); s.originsErr == nil {
			s.origins, s.originsErr = siteOrigins(httpApp.(*caddyhttp.App), s)
		}
		if s.originsErr != nil {
			s.originsErr = fmt.Errorf("cannot derive the issuer identifier from the site's address: %v; "+
				"set `issuer` in the oauth2 global option", s.originsErr)
		}
	})
	return s.originsErr
}

// ServeHTTP serves an endpoint or passes the request on.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if s.srv == nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, errAppNotLoaded)
	}
	if h := s.srv.Endpoint(r.URL.Path); h != nil {
		if s.ctx.Context != nil {
			if err := s.resolveOrigins(); err != nil {
				return caddyhttp.Error(http.StatusServiceUnavailable, err)
			}
		}
		h.ServeHTTP(w, r)
		return nil
	}
	return next.ServeHTTP(w, r)
}

// authenticatedUser is the user an authentication handler established.
func authenticatedUser(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	user, _ := repl.GetString("http.auth.user.id")
	return user
}

// Guard is the `oauth2_guard` handler: it admits a request only with a live
// bearer access token from the `oauth2` app's store that carries every
// required scope (RFC 6750), issued to a client still registered and for
// scopes the client is still registered for. On success it provides
// {http.auth.user.id} (the subject, or the client_id for client_credentials
// tokens, after the issuer's subject_prefix for another server's tokens),
// {oauth2.client_id}, {oauth2.scope}, {oauth2.subject}, {oauth2.issuer} (who
// vouched for the token) and, for a token with claims,
// {oauth2.claims.<name>}, computed only when read.
type Guard struct {
	// Scopes are all required of every token. Default: none.
	Scopes []string `json:"scopes,omitempty"`
	// Realm names the protection space in WWW-Authenticate challenges.
	// Default: "api".
	Realm string `json:"realm,omitempty"`
	// KeepAuthorization passes the Authorization header upstream. Default:
	// false, the header is removed so the token goes no further.
	KeepAuthorization bool `json:"keep_authorization,omitempty"`
	// Audience lists the audiences accepted of the app's access tokens,
	// opaque or JWT: the "aud" of a JWT (RFC 9068 §4), the resources
	// (RFC 8707) an opaque token was issued for, where a token requested
	// without a resource is for the default audience. Default: the app's
	// audience, or its issuer identifier when that is not set either.
	Audience []string `json:"audience,omitempty"`
	// Issuers are other authorization servers whose tokens are accepted
	// too (see external.go). Default: none, only this app's tokens.
	Issuers []*ExternalIssuer `json:"issuers,omitempty"`
	// Resource is this API's resource identifier (RFC 9728, RFC 8707), an
	// http(s) URL: the guard serves its protected resource metadata at
	// /.well-known/oauth-protected-resource plus the resource's path,
	// names that document in every 401 challenge, and admits only tokens
	// whose audience holds the resource (it joins audience). Every client
	// may name it at the authorization endpoint. Default: none.
	Resource string `json:"resource,omitempty"`
	// ResourceName is the resource_name of the metadata document and the
	// name of the resource on the consent page. Default: none.
	ResourceName string `json:"resource_name,omitempty"`
	// RequireDPoP refuses access tokens not bound to a DPoP key (RFC 9449)
	// on this route. Bound tokens always need their proof. Default: false.
	RequireDPoP bool `json:"require_dpop,omitempty"`

	v       *validator.Validator
	logger  *zap.Logger
	metrics *metrics
	clients []*fetch.Client // of the issuers, closed in Cleanup
	// ownIssuer is this app's issuer identifier for a request, the value
	// of {oauth2.issuer} for our own opaque tokens.
	ownIssuer func(*http.Request) string
	keyRefs   []string // the issuers' keys held in issuerKeys
	// prm is the protected resource metadata, with resource only.
	prm *validator.ProtectedResource
}

// CaddyModule returns the Caddy module information.
func (*Guard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.oauth2_guard", New: func() caddy.Module { return new(Guard) }}
}

// Provision connects the guard to the app's token store.
func (g *Guard) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	app, err := oauth2App(ctx)
	if errors.Is(err, errAppNotLoaded) {
		return nil // Caddy reports the app's own error (see errAppNotLoaded)
	}
	if err != nil {
		return err
	}
	g.metrics = app.metrics
	g.ownIssuer = app.issuerOf
	if err := g.provisionResource(app); err != nil {
		return err
	}
	// Our own JWTs first; the external issuers' introspection, which
	// recognises any token, stays last.
	sources, err := g.jwtSources(app)
	if err != nil {
		return err
	}
	external, err := g.externalSources()
	if err != nil {
		return err
	}
	sources = append(sources, external...)
	g.v, err = validator.New(validator.Config{
		Sources: sources,
		Tokens:  app.tokens,
		Hasher:  app.hasher,
		Realm:   g.Realm,
		Scopes:  g.Scopes,
		Timeout: time.Duration(app.StoreTimeout),
		// Tokens follow their client's registration in this configuration:
		// a client removed or a scope dropped by a reload stops passing at
		// once, not when its tokens expire.
		ClientScopes: app.registeredScopes,
		// RFC 8707: the same audience rule for opaque tokens as for JWTs.
		Audience: g.opaqueAudience(app),
		// RFC 9728: every other source's tokens must name the resource.
		Resource:         g.Resource,
		ResourceMetadata: g.resourceMetadataURL(),
		// RFC 9449 §7: one verifier with the token endpoint; the URL the
		// client used is computed only for the DPoP scheme.
		DPoP:        app.dpop,
		RequestURL:  requestURL,
		RequireDPoP: g.RequireDPoP,
	})
	return err
}

// ServeHTTP admits or refuses the request.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if g.v == nil { // never lets a request pass (see errAppNotLoaded)
		return caddyhttp.Error(http.StatusServiceUnavailable, errAppNotLoaded)
	}
	if g.prm != nil && r.URL.Path == g.prm.Path() {
		g.prm.ServeHTTP(w, r) // RFC 9728 §3: no token needed
		return nil
	}
	grant, denial := g.v.CheckGrant(r)
	g.metrics.guardResult(denial)
	if denial != nil {
		if denial.Challenge != "" {
			w.Header().Set("WWW-Authenticate", denial.Challenge)
		}
		if denial.DPoPChallenge != "" { // RFC 9449 §7.1: beside Bearer
			w.Header().Add("WWW-Authenticate", denial.DPoPChallenge)
		}
		if denial.DPoPNonce != "" {
			w.Header().Set("DPoP-Nonce", denial.DPoPNonce)
		}
		if denial.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		return caddyhttp.Error(denial.Status, denial.Err)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	// An authentication handler before this one may have set the user as
	// a static value, which would shadow the provider.
	repl.Delete("http.auth.user.id")
	repl.Map(grantPlaceholders(grant, g.ownIssuer, r))
	if !g.KeepAuthorization {
		r.Header.Del("Authorization")
	}
	return next.ServeHTTP(w, r)
}

// grantPlaceholders provides the guard's placeholders from the grant, at
// replace time: a request whose placeholders nothing reads costs one
// closure instead of five boxed values in the replacer's map.
func grantPlaceholders(g validator.Grant, own func(*http.Request) string, r *http.Request) caddy.ReplacerFunc {
	// The closure keeps only what it reads, not the whole grant: its
	// allocation stays in the size class it had before Grant.JKT.
	tok, claims, foreign := g.Token, g.Claims, g.Issuer
	return func(key string) (any, bool) {
		switch key {
		case "http.auth.user.id":
			user := tok.Subject
			if user == "" {
				user = tok.ClientID
			}
			if foreign != nil {
				// Another server's users are told apart by its subject_prefix.
				return foreign.SubjectPrefix + user, true
			}
			return user, true
		case "oauth2.issuer":
			// Who vouched for the token: the other server, or this one.
			if foreign != nil {
				return foreign.ID, true
			}
			if iss, ok := claims["iss"].(string); ok {
				return iss, true // our own JWT, its verified iss
			}
			return own(r), true
		case "oauth2.client_id":
			return tok.ClientID, true
		case "oauth2.scope":
			return tok.Scope, true
		case "oauth2.subject":
			return tok.Subject, true
		}
		if name, ok := strings.CutPrefix(key, claimsPrefix); ok {
			if v, ok := claims[name]; ok {
				return claimString(v), true
			}
			// Our own tokens, opaque or JWT, of an OpenID Connect grant:
			// the claims released at authorization, kept with the grant.
			var stored map[string]any
			if foreign == nil && tok.OIDC != nil {
				stored = tok.OIDC.Claims
			}
			if v, ok := stored[name]; ok {
				return claimString(v), true
			}
			if claims != nil || foreign == nil && tok.OIDC != nil {
				return "", true // a claim the token lacks is empty, as Caddy's own are
			}
		}
		return nil, false
	}
}

// issuerOf returns this app's issuer identifier for a request: the
// configured one, or the one derived from the address of the site serving
// oauth2_server that the request's host names (the first such site when
// none does).
func (a *App) issuerOf(r *http.Request) string {
	if a.Issuer != "" {
		return a.Issuer
	}
	for _, s := range a.derived {
		if s.ctx.Context == nil || s.resolveOrigins() != nil || len(s.origins) == 0 {
			continue
		}
		return pickOrigin(s.origins, r)
	}
	return ""
}

// errAppNotLoaded marks a handler whose oauth2 app failed to load. Caddy
// loads its apps in random order: were the handler to fail with the app's
// error, the message would be wrapped differently from run to run. So the
// handler loads without the app, Caddy then loads the app itself and fails
// the config with the app's own error, the same every time (the app adds
// the prefix Caddy's cached error would lack, see App.Provision), and the
// handler is never served (if it were, it would refuse every request).
var errAppNotLoaded = errors.New("the oauth2 app failed to load")

// viaHandlerKey marks the context in which a handler loads the app.
type viaHandlerKey struct{}

func oauth2App(ctx caddy.Context) (*App, error) {
	hctx := ctx
	hctx.Context = context.WithValue(ctx.Context, viaHandlerKey{}, true)
	app, err := hctx.AppIfConfigured("oauth2")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, errors.New("the oauth2 app is not configured: add an oauth2 block to the global options (JSON: apps.oauth2)")
	}
	if err != nil {
		return nil, errAppNotLoaded
	}
	return app.(*App), nil
}

// Interface guards
var (
	_ caddy.App                   = (*App)(nil)
	_ caddy.Provisioner           = (*App)(nil)
	_ caddy.Validator             = (*App)(nil)
	_ caddy.Provisioner           = (*Server)(nil)
	_ caddyhttp.MiddlewareHandler = (*Server)(nil)
	_ caddy.Provisioner           = (*Guard)(nil)
	_ caddy.CleanerUpper          = (*Guard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Guard)(nil)
)
