package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/external"
	"github.com/tokengate/caddy-oauth2/fetch"
	"github.com/tokengate/caddy-oauth2/stores"
)

// private_key_jwt client authentication (RFC 7523 §2.2, RFC 7521 §4.2), as
// FAPI 2.0 uses it.
const (
	AuthMethodPrivateKeyJWT = "private_key_jwt"
	assertionTypeJWTBearer  = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// maxAssertionLifetime bounds how far ahead an assertion's exp may be,
	// and so how long its jti is remembered.
	maxAssertionLifetime = 5 * time.Minute
	// assertionLeeway tolerates clock skew between client and server.
	assertionLeeway = 30 * time.Second
	maxAssertionLen = 8 << 10
	maxJTILen       = 256
)

// AssertionAlgs are the signing algorithms a client assertion may use:
// asymmetric only, so none and the HMAC algorithms (which would make the
// public keys a shared secret) are refused before any key is looked at.
var AssertionAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// assertionAlgNames are AssertionAlgs for the metadata document.
var assertionAlgNames = func() []string {
	names := make([]string, len(AssertionAlgs))
	for i, a := range AssertionAlgs {
		names[i] = string(a)
	}
	return names
}()

// assertionClaims are the claims RFC 7523 §3 requires or this server reads.
type assertionClaims struct {
	Issuer    string          `json:"iss"`
	Subject   string          `json:"sub"`
	Audience  json.RawMessage `json:"aud"`
	Expiry    *float64        `json:"exp"`
	NotBefore *float64        `json:"nbf"`
	IssuedAt  *float64        `json:"iat"`
	ID        string          `json:"jti"`
}

// audiences reads aud: a string or an array of strings (RFC 7519 §4.1.3).
func (c *assertionClaims) audiences() []string {
	var one string
	if json.Unmarshal(c.Audience, &one) == nil {
		return []string{one}
	}
	var many []string
	if json.Unmarshal(c.Audience, &many) == nil {
		return many
	}
	return nil
}

// authenticateAssertion authenticates a client by a JWT it signed with its
// private key (RFC 7523 §2.2, §3): iss and sub its client_id, aud this
// server, exp at most five minutes ahead, and a jti never seen before by
// any gateway sharing the code store. Every failure is invalid_client
// (RFC 6749 §5.2), with a description that says what was wrong but
// nothing of the keys.
func (s *Server) authenticateAssertion(r *http.Request, form url.Values) (*client, *oauthError) {
	if name, ok := repeated(form, "client_assertion", "client_assertion_type"); ok {
		return nil, errInvalidRequest("parameter " + name + " repeated")
	}
	// RFC 6749 §2.3: one authentication method per request.
	if len(r.Header.Values("Authorization")) > 0 || form.Has("client_secret") {
		return nil, errInvalidRequest("more than one client authentication method")
	}
	if form.Get("client_assertion_type") != assertionTypeJWTBearer {
		return nil, errInvalidClient("client_assertion_type must be " + assertionTypeJWTBearer)
	}
	raw := form.Get("client_assertion")
	if raw == "" || len(raw) > maxAssertionLen {
		return nil, errInvalidClient("client_assertion is missing or too long")
	}
	jws, err := jose.ParseSigned(raw, AssertionAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, errInvalidClient("client_assertion must be a compact JWS signed with an asymmetric algorithm (" + strings.Join(assertionAlgNames, ", ") + ")")
	}
	var unverified assertionClaims
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified) != nil || unverified.Subject == "" {
		return nil, errInvalidClient("client_assertion has no sub")
	}
	id := unverified.Subject
	if fid := form.Get("client_id"); fid != "" && fid != id {
		return nil, errInvalidClient("client_id does not match the assertion's sub")
	}
	c := s.client(id)
	if c == nil || c.AuthMethod != AuthMethodPrivateKeyJWT {
		return nil, errInvalidClient("client authentication failed")
	}
	// No lockout: a signature cannot be guessed, and counting failures
	// would let anyone lock a client out by sending junk in its name.
	fail := func(desc string) (*client, *oauthError) { return nil, errInvalidClient(desc) }
	hdr := jws.Signatures[0].Protected
	keys, err := s.clientKeys(r.Context(), c, hdr.KeyID)
	if err != nil {
		s.log.Warn("client keys unavailable", zap.String("client_id", c.ID), zap.Error(err))
		return nil, errInvalidClient("the client's keys could not be fetched")
	}
	var payload []byte
	for i := range keys {
		if payload, err = jws.Verify(&keys[i]); err == nil {
			break
		}
	}
	if payload == nil {
		return fail("client_assertion signature does not verify with the client's keys")
	}
	var cl assertionClaims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return fail("client_assertion claims are malformed")
	}
	now := s.now()
	switch {
	case cl.Issuer != c.ID || cl.Subject != c.ID:
		return fail("client_assertion iss and sub must be the client_id")
	case !s.assertionAudience(r, cl.audiences()):
		return fail("client_assertion aud must be the issuer identifier")
	case cl.Expiry == nil:
		return fail("client_assertion has no exp")
	case cl.ID == "" || len(cl.ID) > maxJTILen:
		return fail("client_assertion has no jti")
	}
	exp := time.Unix(int64(*cl.Expiry), 0)
	switch {
	case !now.Before(exp.Add(assertionLeeway)):
		return fail("client_assertion has expired")
	case exp.After(now.Add(maxAssertionLifetime + assertionLeeway)):
		return fail(fmt.Sprintf("client_assertion exp is more than %v ahead", maxAssertionLifetime))
	case cl.NotBefore != nil && time.Unix(int64(*cl.NotBefore), 0).After(now.Add(assertionLeeway)):
		return fail("client_assertion is not valid yet")
	case cl.IssuedAt != nil && time.Unix(int64(*cl.IssuedAt), 0).After(now.Add(assertionLeeway)):
		return fail("client_assertion iat is in the future")
	}
	// RFC 7523 §3 item 7: the jti once only, at every gateway.
	if s.singleUse == nil {
		s.log.Error("private_key_jwt needs an authorization_code_store that keeps single-use values")
		return nil, errUnavailable
	}
	ctx, cancel := s.storeCtx(r)
	err = s.singleUse.PutOnce(ctx, s.hasher.Key("jti."+c.ID+"\x00"+cl.ID), []byte{1}, exp.Add(assertionLeeway))
	cancel()
	switch {
	case errors.Is(err, stores.ErrExists):
		s.log.Warn("client assertion replayed", zap.String("client_id", c.ID))
		if o, ok := s.obs.(AssertionObserver); ok {
			o.AssertionReplayed(s.metricClient(c.ID))
		}
		return fail("client_assertion was used before")
	case err != nil:
		s.storeFailed("put assertion jti", stores.Unavailable(err))
		return nil, errUnavailable
	}
	return c, nil
}

// assertionAudience reports whether aud names this server: its issuer
// identifier, or the token or PAR endpoint URL (RFC 7523 §3 item 3).
func (s *Server) assertionAudience(r *http.Request, aud []string) bool {
	iss := s.issuerFor(r)
	for _, a := range aud {
		if a == iss || a == s.endpointURL(r, TokenPath) || a == s.endpointURL(r, PARPath) {
			return true
		}
	}
	return false
}

// clientKeys returns the keys of a private_key_jwt client an assertion
// signed under kid may be verified with: its inline JWKS, or its jwks_uri's
// set, fetched as an external issuer's keys are.
func (s *Server) clientKeys(ctx context.Context, c *client, kid string) ([]jose.JSONWebKey, error) {
	if c.JWKSURI == "" {
		if kid == "" {
			return c.keys, nil
		}
		for i := range c.keys {
			if c.keys[i].KeyID == kid {
				return c.keys[i : i+1], nil
			}
		}
		return nil, nil
	}
	keys, err := s.jwks.keys(c.JWKSURI, c.dynamic())
	if err != nil {
		return nil, err
	}
	return keys.Lookup(ctx, kid)
}

// clientJWKS caches the key sets of clients' jwks_uri, one per URI, so that
// an unknown kid refetches at most every 10s per URI.
type clientJWKS struct {
	// fetcher is for configured clients' URIs; public for those of
	// clients that registered themselves, which may not point inside.
	fetcher, public *fetch.Client
	now             func() time.Time
	mu              sync.Mutex
	sets            map[string]*external.Keys
}

// maxClientJWKS bounds the cached key sets; past it the cache starts
// afresh.
const maxClientJWKS = 10_000

func (j *clientJWKS) keys(uri string, dynamic bool) (*external.Keys, error) {
	key := uri
	if dynamic {
		key = "dyn " + uri
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if k := j.sets[key]; k != nil {
		return k, nil
	}
	f := j.fetcher
	if dynamic {
		f = j.public
	}
	k, err := external.NewKeys(external.Config{Issuer: uri, JWKSURI: uri, Client: f, MaxAge: time.Hour, Now: j.now})
	if err != nil {
		return nil, err
	}
	if j.sets == nil || len(j.sets) >= maxClientJWKS {
		j.sets = map[string]*external.Keys{}
	}
	j.sets[key] = k
	return k, nil
}

// validJWKSURI checks a client's jwks_uri: https, or http on a loopback
// host for tests and sidecars.
func validJWKSURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("jwks_uri %q is not an absolute URL", raw)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && fetch.Loopback(u)) {
		return fmt.Errorf("jwks_uri %q must be https", raw)
	}
	return nil
}

// parseClientJWKS reads an inline JWK set and keeps its public signing
// keys; a set with none, or with a private or symmetric key, is refused.
func parseClientJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("jwks is not a JWK set: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() {
			return nil, errors.New("jwks must hold public keys only (no private or symmetric keys)")
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks has no public signing key")
	}
	if ids := keyIDs(keys); len(ids) != len(slices.Compact(slices.Sorted(slices.Values(ids)))) {
		return nil, errors.New("jwks has two keys with one kid")
	}
	return keys, nil
}

func keyIDs(keys []jose.JSONWebKey) []string {
	var ids []string
	for _, k := range keys {
		if k.KeyID != "" {
			ids = append(ids, k.KeyID)
		}
	}
	return ids
}
