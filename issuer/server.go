// Package issuer is the OAuth 2.0 authorization server: the authorization,
// token, revocation and introspection endpoints and the server metadata
// document (RFCs 6749, 7009, 7636, 7662, 8414, 9207).
//
// It knows nothing of Caddy. The adapter builds a Config, calls New, and
// routes each endpoint path to Server.Endpoint(path). Codes and tokens are
// kept in the configured stores under their token.Hasher keys; the raw
// values exist only in responses.
package issuer

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/dpop"
	"github.com/tokengate/caddy-oauth2/fetch"
	"github.com/tokengate/caddy-oauth2/jwt"
	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// The endpoint paths Server.Endpoint answers for.
const (
	AuthorizePath  = "/oauth2/authorize"
	TokenPath      = "/oauth2/token"
	RevokePath     = "/oauth2/revoke"
	IntrospectPath = "/oauth2/introspect"
	MetadataPath   = "/.well-known/oauth-authorization-server"
	// JWKSPath serves the public keys of JWT access tokens (RFC 7517), when
	// Config.JWT is set.
	JWKSPath = "/.well-known/jwks.json"
	// UserInfoPath and DiscoveryPath are served with Config.OIDC (OIDC
	// Core §5.3, OpenID Connect Discovery §4).
	UserInfoPath  = "/oauth2/userinfo"
	DiscoveryPath = "/.well-known/openid-configuration"
)

// Defaults for the zero values of Config.
const (
	DefaultCodeLifetime         = 600 * time.Second
	DefaultAccessTokenLifetime  = 3600 * time.Second
	DefaultRefreshTokenLifetime = 43200 * time.Second
	DefaultMaxBodyBytes         = 64 << 10
	DefaultStoreTimeout         = 2 * time.Second
)

// Config configures a Server. Zero values take the documented defaults.
type Config struct {
	// Issuer is the issuer identifier (RFC 8414 §2): an http(s) URL with no
	// query or fragment. Default: what IssuerFor returns.
	Issuer string
	// IssuerFor returns the issuer identifier of a request when Issuer is
	// empty. It must not be taken from the Host header, which the client
	// chooses (RFC 9207 §2.4); the Caddy adapter derives it from the site's
	// configured address. Default: the request origin (scheme://Host, the
	// scheme from whether the connection used TLS), which is only safe when
	// something before the server fixes the Host header.
	IssuerFor func(r *http.Request) string
	// Clients are the configured clients by client ID. Required unless
	// Registry is set.
	Clients map[string]*Client
	// Registry, when set, adds the clients registered at runtime; a
	// configured client's ID shadows a registered one. Default: nil.
	Registry *Registry
	// Registration, when set, serves dynamic client registration (RFC 7591,
	// RFC 7592) at RegisterPath; it needs Registry. Default: nil, off.
	Registration *Registration
	// Codes keeps authorization codes. Required.
	Codes stores.CodeStore
	// Tokens keeps access and refresh tokens. Required.
	Tokens stores.TokenStore
	// Hasher turns raw codes and tokens into store keys. Required.
	Hasher *token.Hasher
	// CodeLifetime bounds an authorization code's life. Default: 600s.
	CodeLifetime time.Duration
	// AccessTokenLifetime bounds an access token's life. Default: 3600s.
	AccessTokenLifetime time.Duration
	// RefreshTokenLifetime bounds a refresh token's life. Default: 43200s.
	RefreshTokenLifetime time.Duration
	// RequirePKCE makes PKCE mandatory for confidential clients too. It is
	// always mandatory for public clients. Default: false.
	RequirePKCE bool
	// MaxBodyBytes caps request bodies. Default: 64 KiB.
	MaxBodyBytes int64
	// StoreTimeout is the deadline of every store call. Default: 2s.
	StoreTimeout time.Duration
	// Subject returns the authenticated resource owner of a request, ""
	// when there is none. An authentication handler must run before the
	// authorization endpoint. Default: nobody is ever authenticated.
	Subject func(r *http.Request) string
	// CSRFKey keys the consent form's CSRF tokens. Servers sharing consent
	// traffic must share it. Default: random per Server.
	CSRFKey []byte
	// MaxSecretVerifications caps the client-secret bcrypt checks running at
	// once; a request that cannot start one within SecretVerificationWait
	// is answered 503 temporarily_unavailable. Default: half of GOMAXPROCS,
	// at least 1.
	MaxSecretVerifications int
	// SecretVerificationWait is how long a request waits for a free
	// verification slot. Default: 1s.
	SecretVerificationWait time.Duration
	// Limits, when set, are shared brute-force limits (see NewLimits); the
	// two fields above are then ignored. Default: limits of this Server's
	// own.
	Limits *Limits
	// ClientIP returns the address failed client authentications are
	// counted under. Default: the host of r.RemoteAddr.
	ClientIP func(r *http.Request) string
	// Unredacted is called when an authorization code went out in a
	// response whose header map could not be redacted afterwards, because a
	// response writer wrapper buffers the response; the request's access
	// log entry would show the code. Default: nothing is done.
	Unredacted func(r *http.Request)
	// Logger receives structured logs. Default: zap.NewNop().
	Logger *zap.Logger
	// ScopeDescriptions are the human descriptions of scopes shown on the
	// consent page. Default: none, the raw scope names are shown.
	ScopeDescriptions map[string]string
	// ConsentTemplate, when set, renders the consent page instead of the
	// built-in one; it must define ConsentTemplateName. Default: nil.
	ConsentTemplate *template.Template
	// Observer is told of issued tokens, errors and failed client
	// authentications, for metrics. Default: none.
	Observer Observer
	// JWT, when set, makes access tokens JWTs (RFC 9068) signed by this
	// ring, and serves its public keys at JWKSPath. Their "jti" is stored
	// under its Hasher key like an opaque token, so introspection,
	// revocation and rotation work alike. Default: nil, opaque tokens.
	JWT *jwt.Ring
	// Audience is the "aud" of JWT access tokens requested without a
	// registered resource indicator. Default: the issuer identifier.
	Audience string
	// Resources are the resources (RFC 8707) every client may name besides
	// its own, with their display names. Default: nil, only each client's.
	Resources *Resources
	// MetadataDocuments, when set, accepts https URLs as client IDs whose
	// client ID metadata document is fetched (see cimd.go). Default: nil,
	// off.
	MetadataDocuments *MetadataDocuments
	// OIDC, when set, turns on OpenID Connect (see oidc.go): ID tokens
	// for grants with the openid scope, UserInfo at UserInfoPath and the
	// discovery document at DiscoveryPath. Default: nil, off.
	OIDC *OIDC
	// SingleUse keeps pushed authorization requests (RFC 9126) and the jti
	// of client assertions (RFC 7523) once for every gateway sharing it.
	// Default: Codes' (stores.SingleUseOf), when it has one; without one
	// there is no PAR endpoint and private_key_jwt is refused (503).
	SingleUse stores.SingleUse
	// RequirePAR makes every client push its authorization requests (RFC
	// 9126 §5). Default: false; Client.RequirePAR asks it of one client.
	RequirePAR bool
	// Profile turns on a security profile: ProfileFAPI2 for the FAPI 2.0
	// Security Profile's server requirements (see fapi.go). Default: none.
	Profile string
	// KeyFetcher fetches configured clients' jwks_uri. Default: fetch.New
	// with a 5s timeout and up to 3 same-origin redirects.
	KeyFetcher *fetch.Client
	// PublicKeyFetcher fetches the jwks_uri of clients that registered
	// themselves, which must not point into the gateway's network.
	// Default: as KeyFetcher, refusing private addresses.
	PublicKeyFetcher *fetch.Client
	// DPoP, when set, checks the DPoP proofs of token requests (RFC 9449):
	// a request with a valid proof gets an access token bound to the
	// proof's key. Share it with the guards, so a proof's jti is refused at
	// both after its first use. Default: nil, DPoP headers are ignored.
	DPoP *dpop.Verifier
	// RequireDPoP refuses every token request without a DPoP proof, as
	// Client.DPoPBoundAccessTokens does for one client. Needs DPoP.
	// Default: false.
	RequireDPoP bool
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Server serves the authorization server endpoints. It is safe for
// concurrent use.
type Server struct {
	issuer       string
	issuerFunc   func(r *http.Request) string
	clients      map[string]*client
	registry     *Registry
	registration *Registration
	touching     sync.Map // client IDs whose lifetime is being extended
	codes        stores.CodeStore
	tokens       stores.TokenStore
	hasher       *token.Hasher
	codeTTL      time.Duration
	accessTTL    time.Duration
	refreshTTL   time.Duration
	requirePKCE  bool
	maxBody      int64
	storeTimeout time.Duration
	subject      func(r *http.Request) string
	csrfKey      []byte
	unredacted   func(r *http.Request)
	log          *zap.Logger
	obs          Observer
	now          func() time.Time
	ring         *jwt.Ring
	audience     string
	resources    *Resources
	cimd         *MetadataDocuments
	oidc         *oidcConfig
	singleUse    stores.SingleUse
	requirePAR   bool
	fapi2        bool
	jwks         *clientJWKS
	dpop         *dpop.Verifier
	requireDPoP  bool

	scopeDescriptions map[string]string
	consentTemplate   *template.Template
	// Brute-force limits, see limiter.go.
	limits   *limiter
	clientIP func(r *http.Request) string

	// Secret verification memo, see verifySecret.
	memoKey   []byte
	memoMu    sync.RWMutex
	memo      map[string]memoEntry
	dummyOnce sync.Once
	dummy     []byte

	scopesSupported []string
	grantsSupported []string
	handlers        map[string]http.Handler
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	s := &Server{
		issuer:       cfg.Issuer,
		issuerFunc:   cfg.IssuerFor,
		codes:        cfg.Codes,
		tokens:       cfg.Tokens,
		registry:     cfg.Registry,
		registration: cfg.Registration,
		hasher:       cfg.Hasher,
		codeTTL:      orDefault(cfg.CodeLifetime, DefaultCodeLifetime),
		accessTTL:    orDefault(cfg.AccessTokenLifetime, DefaultAccessTokenLifetime),
		refreshTTL:   orDefault(cfg.RefreshTokenLifetime, DefaultRefreshTokenLifetime),
		requirePKCE:  cfg.RequirePKCE,
		maxBody:      orDefault(cfg.MaxBodyBytes, DefaultMaxBodyBytes),
		storeTimeout: orDefault(cfg.StoreTimeout, DefaultStoreTimeout),
		subject:      cfg.Subject,
		unredacted:   cfg.Unredacted,
		clientIP:     cfg.ClientIP,
		log:          cfg.Logger,
		obs:          cfg.Observer,
		now:          cfg.Now,
		ring:         cfg.JWT,
		audience:     cfg.Audience,
		resources:    cfg.Resources,
		cimd:         cfg.MetadataDocuments,
		singleUse:    cfg.SingleUse,
		requirePAR:   cfg.RequirePAR,
		jwks:         &clientJWKS{fetcher: cfg.KeyFetcher, public: cfg.PublicKeyFetcher},
		dpop:         cfg.DPoP,
		requireDPoP:  cfg.RequireDPoP,

		scopeDescriptions: cfg.ScopeDescriptions,
		consentTemplate:   cfg.ConsentTemplate,
		memo:              make(map[string]memoEntry),
	}
	if s.codes == nil || s.tokens == nil {
		return nil, errors.New("issuer: code and token stores are required")
	}
	if s.hasher == nil {
		return nil, errors.New("issuer: hasher is required")
	}
	if s.singleUse == nil {
		s.singleUse, _ = stores.SingleUseOf(s.codes)
	}
	if s.jwks.fetcher == nil {
		s.jwks.fetcher = fetch.New(fetch.Options{MaxRedirects: 3})
	}
	if s.jwks.public == nil {
		s.jwks.public = fetch.New(fetch.Options{MaxRedirects: 3, RefusePrivate: true})
	}
	if err := s.applyProfile(&cfg); err != nil {
		return nil, err
	}
	if err := validateIssuer(s.issuer); err != nil {
		return nil, err
	}
	for name, d := range map[string]time.Duration{
		"code lifetime": s.codeTTL, "access token lifetime": s.accessTTL,
		"refresh token lifetime": s.refreshTTL, "store timeout": s.storeTimeout,
	} {
		if d < time.Second {
			return nil, fmt.Errorf("issuer: %s %v must be at least 1s", name, d)
		}
	}
	if s.maxBody <= 0 {
		return nil, fmt.Errorf("issuer: max body bytes %d must be positive", s.maxBody)
	}
	if s.requireDPoP && s.dpop == nil {
		return nil, errors.New("issuer: RequireDPoP needs a DPoP verifier")
	}
	if len(cfg.Clients) == 0 && s.registry == nil && s.cimd == nil {
		return nil, errors.New("issuer: at least one client is required")
	}
	if s.registration != nil && s.registry == nil {
		return nil, errors.New("issuer: dynamic client registration needs a client registry")
	}
	s.clients = make(map[string]*client, len(cfg.Clients))
	scopes := map[string]bool{}
	grants := map[string]bool{}
	for id, c := range cfg.Clients {
		cl, err := newClient(id, c)
		if err != nil {
			return nil, fmt.Errorf("issuer: client %q: %w", id, err)
		}
		if err := s.checkClientProfile(cl); err != nil {
			return nil, fmt.Errorf("issuer: client %q: %w", id, err)
		}
		if cl.AuthMethod == AuthMethodPrivateKeyJWT && s.singleUse == nil {
			return nil, fmt.Errorf("issuer: client %q: private_key_jwt needs an authorization code store that keeps single-use values (stores.SingleUse), to refuse replayed assertions", id)
		}
		if cl.DPoPBoundAccessTokens && s.dpop == nil {
			return nil, fmt.Errorf("issuer: client %q: dpop_bound_access_tokens needs DPoP", id)
		}
		s.clients[id] = cl
		for _, sc := range cl.Scopes {
			scopes[sc] = true
		}
		for g := range cl.grants {
			grants[g] = true
		}
	}
	if err := s.checkProfileDPoP(); err != nil {
		return nil, err
	}
	for sc := range scopes {
		s.scopesSupported = append(s.scopesSupported, sc)
	}
	slices.Sort(s.scopesSupported)
	for g := range grants {
		s.grantsSupported = append(s.grantsSupported, g)
	}
	slices.Sort(s.grantsSupported)

	if s.subject == nil {
		s.subject = func(*http.Request) string { return "" }
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.clientIP == nil {
		s.clientIP = remoteHost
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.jwks.now = s.now
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	if cfg.Limits != nil {
		s.limits = cfg.Limits.l
	} else {
		s.limits = newLimiter(cfg.MaxSecretVerifications, cfg.SecretVerificationWait)
	}
	if s.consentTemplate != nil && s.consentTemplate.Lookup(ConsentTemplateName) == nil {
		return nil, fmt.Errorf("issuer: the consent template defines no %q", ConsentTemplateName)
	}
	var err error
	if s.oidc, err = newOIDC(cfg.OIDC); err != nil {
		return nil, err
	}
	if s.oidc != nil {
		for id, c := range s.clients {
			if alg := idTokenAlg(c); !slices.Contains(s.oidc.Ring.Algorithms(), alg) {
				return nil, fmt.Errorf("issuer: client %q: id_token_signed_response_alg %s: no signing key of that algorithm", id, alg)
			}
		}
	}
	if s.csrfKey = cfg.CSRFKey; len(s.csrfKey) == 0 {
		if s.csrfKey, err = token.RandomSecret(); err != nil {
			return nil, fmt.Errorf("issuer: csrf key: %w", err)
		}
	} else {
		s.csrfKey = slices.Clone(s.csrfKey)
	}
	if s.memoKey, err = token.RandomSecret(); err != nil {
		return nil, fmt.Errorf("issuer: memo key: %w", err)
	}
	s.handlers = map[string]http.Handler{
		AuthorizePath:  http.HandlerFunc(s.serveAuthorize),
		TokenPath:      http.HandlerFunc(s.serveToken),
		RevokePath:     http.HandlerFunc(s.serveRevoke),
		IntrospectPath: http.HandlerFunc(s.serveIntrospect),
		MetadataPath:   http.HandlerFunc(s.serveMetadata),
	}
	if s.ring != nil || s.oidc != nil {
		s.handlers[JWKSPath] = http.HandlerFunc(s.serveJWKS)
	}
	if s.oidc != nil {
		s.handlers[UserInfoPath] = http.HandlerFunc(s.serveUserInfo)
		s.handlers[DiscoveryPath] = http.HandlerFunc(s.serveDiscovery)
		s.handlers[LogoutPath] = http.HandlerFunc(s.serveLogout)
	}
	if s.singleUse != nil {
		s.handlers[PARPath] = http.HandlerFunc(s.servePAR)
	} else if s.requirePAR {
		return nil, errors.New("issuer: pushed authorization requests need an authorization code store that keeps single-use values (stores.SingleUse)")
	}
	if s.registration != nil {
		if err := s.registration.init(); err != nil {
			return nil, err
		}
		s.handlers[RegisterPath] = http.HandlerFunc(s.serveRegister)
		for _, sc := range s.registration.Scopes {
			if !slices.Contains(s.scopesSupported, sc) {
				s.scopesSupported = append(s.scopesSupported, sc)
			}
		}
		slices.Sort(s.scopesSupported)
	}
	if s.cimd != nil {
		if err := s.cimd.init(s); err != nil {
			return nil, err
		}
		for _, sc := range s.cimd.Scopes {
			if !slices.Contains(s.scopesSupported, sc) {
				s.scopesSupported = append(s.scopesSupported, sc)
			}
		}
		slices.Sort(s.scopesSupported)
		for _, g := range []string{grantAuthorizationCode, grantRefreshToken} {
			if !slices.Contains(s.grantsSupported, g) {
				s.grantsSupported = append(s.grantsSupported, g)
			}
		}
		slices.Sort(s.grantsSupported)
	}
	s.addPathInsertedMetadata()
	return s, nil
}

// client returns the client with the ID, configured or registered at
// runtime, nil for none.
func (s *Server) client(id string) *client {
	if c := s.clients[id]; c != nil {
		return c
	}
	if s.registry != nil {
		return s.registry.lookup(id)
	}
	return nil
}

// Endpoint returns the handler for one of the endpoint paths (AuthorizePath
// and friends), nil for any other path.
func (s *Server) Endpoint(path string) http.Handler {
	if h := s.handlers[path]; h != nil {
		return h
	}
	if s.registration != nil && strings.HasPrefix(path, RegisterPath+"/") {
		return s.handlers[RegisterPath] // RFC 7592 client configuration endpoints
	}
	return nil
}

// validateIssuer checks an issuer identifier per RFC 8414 §2: a URL with a
// scheme and host and no query or fragment. http is allowed for local
// development; production deployments should use https.
// ValidateIssuer checks an issuer identifier as New does, so that a
// configuration adapter can report a mistake where it is written.
func ValidateIssuer(iss string) error { return validateIssuer(iss) }

func validateIssuer(iss string) error {
	if iss == "" {
		return nil
	}
	u, err := url.Parse(iss)
	if err != nil {
		return fmt.Errorf("issuer: issuer %q: %w", iss, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(iss, "#") {
		return fmt.Errorf("issuer: issuer %q must be an http(s) URL with a host and no query or fragment", iss)
	}
	return nil
}

// issuerFor returns the issuer identifier for a request: the configured one,
// IssuerFor's, or the request origin. X-Forwarded-* headers are not trusted.
func (s *Server) issuerFor(r *http.Request) string {
	if s.issuer != "" {
		return s.issuer
	}
	if s.issuerFunc != nil {
		return s.issuerFunc(r)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// endpointURL returns the absolute URL of an endpoint path under the issuer.
func (s *Server) endpointURL(r *http.Request, path string) string {
	return strings.TrimSuffix(s.issuerFor(r), "/") + path
}

// storeCtx bounds one store call.
func (s *Server) storeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.storeTimeout)
}

// storeFailed reports whether err is a backend failure rather than one of
// the answers a store gives (ErrNotFound, ErrConsumed). Such failures are
// logged and answered with 503 temporarily_unavailable, never as a pass.
func (s *Server) storeFailed(op string, err error) bool {
	if err == nil || errors.Is(err, stores.ErrNotFound) || errors.Is(err, stores.ErrConsumed) {
		return false
	}
	s.log.Error("store unavailable", zap.String("op", op), zap.Error(err))
	return true
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
