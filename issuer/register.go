package issuer

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// RegisterPath is the client registration endpoint (RFC 7591 §3); each
// client's configuration endpoint (RFC 7592 §2) is RegisterPath/<client_id>.
const RegisterPath = "/oauth2/register"

// RegistrationTokenPrefix starts every registration access token.
const RegistrationTokenPrefix = "crat_"

// Registration defaults.
const (
	DefaultRegistrationMaxClients = 10_000
	DefaultRegistrationRateLimit  = 10
)

// Registration configures dynamic client registration (RFC 7591) and the
// management of such clients (RFC 7592). Config.Registration turns it on;
// it needs Config.Registry. Registered clients never skip consent, cannot
// introspect others' tokens and have no resource indicators of their own
// (they may name Config.Resources, as every client may).
type Registration struct {
	// Open lets anyone register a client. Exactly one of Open and
	// InitialAccessToken must be set.
	Open bool
	// InitialAccessToken is the bearer token a registration request must
	// carry (RFC 7591 §3): at least 32 bytes.
	InitialAccessToken string
	// Scopes are the most a registered client may be granted: a request's
	// scope is cut to them, and a request naming no scope gets all of them.
	// Default: none, so registered clients get no scope.
	Scopes []string
	// GrantTypes are the grant types a registered client may use: a
	// request's grant_types are cut to them; a request naming none gets
	// authorization_code and refresh_token as far as they are allowed.
	// client_credentials is only ever given to a confidential client.
	// Default: authorization_code and refresh_token.
	GrantTypes []string
	// ClientLifetime, when positive, is how long a registered client
	// lives after its registration, its last RFC 7592 read or update, or
	// its last token (see touchClient); then it and its registration
	// access token stop working. Default: 0, forever.
	ClientLifetime time.Duration
	// MaxClients is the most live registered clients; a registration
	// beyond them is refused. Default: 10,000.
	MaxClients int
	// RateLimit is how many registrations an address (IPv6: its /64) may
	// make before each further one waits a backoff that doubles from 1s
	// to 60s, forgotten 15 minutes after the last; a failed initial
	// access token counts too. Default: 10.
	RateLimit int

	initialSum [sha256.Size]byte
}

// init checks the configuration and fills in the defaults.
func (reg *Registration) init() error {
	if reg.Open == (reg.InitialAccessToken != "") {
		return errors.New("issuer: registration: set exactly one of open and initial_access_token")
	}
	if reg.InitialAccessToken != "" && len(reg.InitialAccessToken) < 32 {
		return errors.New("issuer: registration: initial_access_token must have at least 32 bytes")
	}
	reg.initialSum = sha256.Sum256([]byte(reg.InitialAccessToken))
	for _, sc := range reg.Scopes {
		if !validScopeToken(sc) {
			return fmt.Errorf("issuer: registration: invalid scope %q", sc)
		}
	}
	if len(reg.GrantTypes) == 0 {
		reg.GrantTypes = []string{grantAuthorizationCode, grantRefreshToken}
	}
	for _, g := range reg.GrantTypes {
		if g != grantAuthorizationCode && g != grantRefreshToken && g != grantClientCredentials {
			return fmt.Errorf("issuer: registration: unsupported grant type %q", g)
		}
	}
	if reg.ClientLifetime < 0 || reg.MaxClients < 0 || reg.RateLimit < 0 {
		return errors.New("issuer: registration: lifetimes and counts must not be negative")
	}
	reg.MaxClients = orDefault(reg.MaxClients, DefaultRegistrationMaxClients)
	reg.RateLimit = orDefault(reg.RateLimit, DefaultRegistrationRateLimit)
	return nil
}

// policy cuts requested scopes and grant types to what registration allows
// (RFC 7591 §2: the server may replace requested values). A request whose
// every scope or grant type is refused is refused.
func (reg *Registration) policy(m *ClientMetadata) *MetadataError {
	if asked := m.Scopes(); len(asked) > 0 {
		var kept []string
		for _, sc := range asked {
			if slices.Contains(reg.Scopes, sc) && !slices.Contains(kept, sc) {
				kept = append(kept, sc)
			}
		}
		if len(kept) == 0 {
			return badField("scope", errors.New("none of the requested scopes may be registered"))
		}
		m.Scope = strings.Join(kept, " ")
	} else {
		m.Scope = strings.Join(reg.Scopes, " ")
	}
	allowed := func(g string) bool {
		return slices.Contains(reg.GrantTypes, g) && (g != grantClientCredentials || !m.Public())
	}
	if len(m.GrantTypes) > 0 {
		var kept []string
		for _, g := range m.GrantTypes {
			if allowed(g) && !slices.Contains(kept, g) {
				kept = append(kept, g)
			}
		}
		if len(kept) == 0 {
			return badField("grant_types", errors.New("none of the requested grant types may be registered"))
		}
		m.GrantTypes = kept
	} else {
		for _, g := range []string{grantAuthorizationCode, grantRefreshToken} {
			if allowed(g) {
				m.GrantTypes = append(m.GrantTypes, g)
			}
		}
		if len(m.GrantTypes) == 0 {
			return badField("grant_types", errors.New("name the grant types: the default ones may not be registered"))
		}
	}
	if !slices.Contains(m.GrantTypes, grantAuthorizationCode) {
		m.ResponseTypes = nil
	}
	return nil
}

// serveRegister serves the registration endpoint and the client
// configuration endpoints below it.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == RegisterPath {
		if r.Method != http.MethodPost {
			methodNotAllowed(w, http.MethodPost)
			return
		}
		s.registerClient(w, r)
		return
	}
	id, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), RegisterPath+"/"))
	if err != nil || id == "" {
		registrationTokenError(w)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodPut, http.MethodDelete:
		s.manageClient(w, r, id)
	default:
		methodNotAllowed(w, http.MethodGet, http.MethodPut, http.MethodDelete)
	}
}

// registerClient is RFC 7591 §3.1: a client registration request.
func (s *Server) registerClient(w http.ResponseWriter, r *http.Request) {
	reg := s.registration
	addrKey := "r\x00" + addressKey(s.clientIP(r))
	now := s.now()
	if wait := s.limits.lockedFor(addrKey, now); wait > 0 {
		s.refused("rate_limited")
		writeError(w, throttled(w, http.StatusTooManyRequests, "too many registrations from this address, retry later", wait))
		return
	}
	if !reg.Open {
		// RFC 7591 §3: the initial access token is a bearer token (RFC 6750).
		raw, ok := bearerToken(r)
		sum := sha256.Sum256([]byte(raw))
		if !ok || subtle.ConstantTimeCompare(sum[:], reg.initialSum[:]) != 1 {
			s.limits.fail(addrKey, reg.RateLimit, now)
			s.refused("invalid_token")
			challenge := `Bearer realm="oauth2"`
			if ok {
				challenge += `, error="invalid_token", error_description="the initial access token is not valid"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			writeJSON(w, http.StatusUnauthorized, &oauthError{Code: "invalid_token", Description: "a valid initial access token is required to register"})
			return
		}
	}
	m, ok := s.readMetadata(w, r)
	if !ok {
		return
	}
	if me := reg.policy(m); me != nil {
		s.metadataError(w, me)
		return
	}
	if s.fapi2 && m.secretAuth() {
		s.metadataError(w, badField("token_endpoint_auth_method", errors.New("profile fapi2: confidential clients authenticate with private_key_jwt")))
		return
	}
	if me := s.idTokenAlgFits(m); me != nil {
		s.metadataError(w, me)
		return
	}
	if s.registry.Dynamic() >= reg.MaxClients {
		s.refused("max_clients")
		writeJSON(w, http.StatusBadRequest, &oauthError{Code: ErrCodeInvalidClientMetadata,
			Description: "the server accepts no more client registrations"})
		return
	}
	rc, secret, err := s.registry.NewRecord(m, stores.RegisteredDynamically, reg.ClientLifetime)
	if err != nil {
		s.registryError(w, err)
		return
	}
	rat, err := token.New(RegistrationTokenPrefix)
	if err != nil {
		writeError(w, errUnavailable)
		return
	}
	rc.RegistrationTokenKey = s.hasher.Key(rat)
	ctx, cancel := s.storeCtx(r)
	err = s.registry.Create(ctx, rc)
	cancel()
	if err != nil {
		s.registryError(w, err)
		return
	}
	s.limits.fail(addrKey, reg.RateLimit, now)
	s.log.Info("client registered itself", zap.String("client_id", rc.ID), zap.String("address", addrKey[2:]))
	// RFC 7591 §3.2.1: 201 with the metadata as registered.
	v := ClientView(rc, false)
	if secret != "" {
		v["client_secret"] = secret
	}
	v["registration_access_token"] = rat
	v["registration_client_uri"] = s.endpointURL(r, RegisterPath+"/"+url.PathEscape(rc.ID))
	writeJSON(w, http.StatusCreated, v)
}

// manageClient is RFC 7592 §2: read, update or delete a client with its
// registration access token. A missing client and a wrong token get the
// same 401 (RFC 7592 §2.1).
func (s *Server) manageClient(w http.ResponseWriter, r *http.Request, id string) {
	raw, ok := bearerToken(r)
	rc, found := s.registry.Get(id)
	if !ok || !found || rc.RegistrationTokenKey == "" || !token.WellFormed(RegistrationTokenPrefix, raw) ||
		subtle.ConstantTimeCompare([]byte(s.hasher.Key(raw)), []byte(rc.RegistrationTokenKey)) != 1 {
		s.refused("invalid_token")
		registrationTokenError(w)
		return
	}
	reg := s.registration
	switch r.Method {
	case http.MethodDelete:
		ctx, cancel := s.storeCtx(r)
		err := s.registry.Delete(ctx, id)
		cancel()
		if err != nil && !errors.Is(err, stores.ErrNotFound) {
			if s.storeFailed("delete client", err) {
				writeError(w, errUnavailable)
				return
			}
		}
		s.log.Info("client deleted itself", zap.String("client_id", id))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent) // RFC 7592 §2.3
		return
	case http.MethodPut:
		m, ok := s.readMetadata(w, r)
		if !ok {
			return
		}
		// RFC 7592 §2.2: the request names the client and, if it has one,
		// its current secret.
		if m.ClientID != id {
			s.metadataError(w, badField("client_id", errors.New("client_id must be the client's own")))
			return
		}
		if m.ClientSecret != "" && bcrypt.CompareHashAndPassword(rc.SecretHash, []byte(m.ClientSecret)) != nil {
			s.metadataError(w, badField("client_secret", errors.New("client_secret is not the client's")))
			return
		}
		m.ClientID, m.ClientSecret = "", ""
		if me := reg.policy(m); me != nil {
			s.metadataError(w, me)
			return
		}
		if me := s.idTokenAlgFits(m); me != nil {
			s.metadataError(w, me)
			return
		}
		next, err := s.registry.Apply(rc, m)
		if err != nil {
			s.registryError(w, err)
			return
		}
		rc = next
	}
	// RFC 7592 §3: the answer carries a registration access token, and the
	// server keeps only a hash of it, so every read and update issues a
	// new one; the previous one stops working.
	rat, err := token.New(RegistrationTokenPrefix)
	if err != nil {
		writeError(w, errUnavailable)
		return
	}
	rc.RegistrationTokenKey = s.hasher.Key(rat)
	rc.UpdatedAt = s.now()
	if reg.ClientLifetime > 0 {
		rc.ExpiresAt = rc.UpdatedAt.Add(reg.ClientLifetime)
	}
	ctx, cancel := s.storeCtx(r)
	err = s.registry.Update(ctx, rc)
	cancel()
	if err != nil {
		s.registryError(w, err)
		return
	}
	v := ClientView(rc, false)
	v["registration_access_token"] = rat
	v["registration_client_uri"] = s.endpointURL(r, RegisterPath+"/"+url.PathEscape(rc.ID))
	writeJSON(w, http.StatusOK, v)
}

// touchClient extends a self-registered client's lifetime when it gets
// tokens, so that client_lifetime lapses only clients that are not used:
// at most once per half lifetime, off the request's path.
func (s *Server) touchClient(c *client) {
	reg := s.registration
	if reg == nil || reg.ClientLifetime <= 0 || !c.dynamic() || c.expires.IsZero() {
		return
	}
	now := s.now()
	if c.expires.Sub(now) > reg.ClientLifetime/2 {
		return
	}
	if _, busy := s.touching.LoadOrStore(c.ID, true); busy {
		return
	}
	go func() {
		defer s.touching.Delete(c.ID)
		ctx, cancel := context.WithTimeout(context.Background(), s.storeTimeout)
		defer cancel()
		if err := s.registry.Extend(ctx, c.ID, now.Add(reg.ClientLifetime)); err != nil && !errors.Is(err, stores.ErrNotFound) {
			s.log.Warn("extending a registered client's lifetime failed; the next token request retries",
				zap.String("client_id", c.ID), zap.Error(err))
		}
	}()
}

// readMetadata reads a JSON client metadata body (the client's own fields
// only; operator fields are dropped, except client_id and client_secret,
// which RFC 7592 §2.2 updates carry).
func (s *Server) readMetadata(w http.ResponseWriter, r *http.Request) (*ClientMetadata, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		s.metadataError(w, badField("", errors.New("the content type must be application/json")))
		return nil, false
	}
	if r.ContentLength > s.maxBody {
		writeError(w, errBodyTooLarge)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, errBodyTooLarge)
		} else {
			writeError(w, errInvalidRequest("cannot read request body"))
		}
		return nil, false
	}
	m, me := ParseClientMetadata(body, true)
	if me != nil {
		s.metadataError(w, me)
		return nil, false
	}
	// A client registering itself sets none of the operator's fields.
	m.SkipConsent, m.Introspect, m.Resources = false, false, nil
	if r.Method == http.MethodPost {
		m.ClientID, m.ClientSecret = "", ""
	}
	return m, true
}

// registryError answers a failed registry call.
func (s *Server) registryError(w http.ResponseWriter, err error) {
	var me *MetadataError
	switch {
	case errors.As(err, &me):
		s.metadataError(w, me)
	case errors.Is(err, stores.ErrExists), errors.Is(err, ErrTooManyClients):
		s.refused("max_clients")
		writeJSON(w, http.StatusBadRequest, &oauthError{Code: ErrCodeInvalidClientMetadata,
			Description: "the server accepts no more client registrations"})
	case errors.Is(err, stores.ErrNotFound):
		registrationTokenError(w)
	default:
		s.log.Error("client registry unavailable", zap.Error(err))
		writeError(w, &oauthError{Status: http.StatusServiceUnavailable, Code: errCodeTemporarilyUnavailable,
			Description: "the client registry is unavailable, try again later"})
	}
}

// metadataError answers RFC 7591 §3.2.2: 400 with the error code, the
// field at fault first in the description.
func (s *Server) metadataError(w http.ResponseWriter, me *MetadataError) {
	s.refused(me.Code)
	desc := me.Err.Error()
	if me.Field != "" {
		desc = me.Field + ": " + desc
	}
	writeJSON(w, http.StatusBadRequest, &oauthError{Code: me.Code, Description: SafeDescription(desc)})
}

// refused counts a refused registration request.
func (s *Server) refused(reason string) {
	if o, ok := s.obs.(ClientObserver); ok {
		o.RegistrationRefused(reason)
	}
}

// registrationTokenError is RFC 7592 §2 / RFC 6750 §3.1: the registration
// access token is missing, wrong or of a client that is gone.
func registrationTokenError(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="oauth2", error="invalid_token", error_description="the registration access token is not valid"`)
	writeJSON(w, http.StatusUnauthorized, &oauthError{Code: "invalid_token", Description: "the registration access token is not valid"})
}

// bearerToken returns the token of an Authorization: Bearer header (RFC
// 6750 §2.1).
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// SafeDescription keeps the characters RFC 6749 §5.2 allows in an
// error_description (%x20-21 / %x23-5B / %x5D-7E): double quotes, which
// the messages use around values, become single quotes, anything else
// outside the set a question mark.
func SafeDescription(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c == '"':
			b[i] = '\''
		case c < 0x20 || c == '\\' || c > 0x7e:
			b[i] = '?'
		}
	}
	return string(b)
}

// idTokenAlgFits refuses an id_token_signed_response_alg (OpenID Connect
// Registration §2) this server has no key of, which newClient cannot know:
// the ID token of such a client could never be signed.
func (s *Server) idTokenAlgFits(m *ClientMetadata) *MetadataError {
	raw, ok := m.Extra["id_token_signed_response_alg"]
	if !ok || string(raw) == "null" {
		return nil
	}
	var alg string
	if json.Unmarshal(raw, &alg) != nil {
		return badField("id_token_signed_response_alg", errors.New("id_token_signed_response_alg has the wrong type"))
	}
	if s.oidc != nil && !slices.Contains(s.oidc.Ring.Algorithms(), alg) {
		return badField("id_token_signed_response_alg", fmt.Errorf("id_token_signed_response_alg %q: this server signs ID tokens with %s", alg, strings.Join(s.oidc.Ring.Algorithms(), ", ")))
	}
	return nil
}
