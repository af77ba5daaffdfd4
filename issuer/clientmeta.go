package issuer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// Token endpoint authentication methods (RFC 7591 §2).
const (
	AuthMethodNone   = "none"
	AuthMethodBasic  = "client_secret_basic"
	AuthMethodPost   = "client_secret_post"
	responseTypeCode = "code"
)

// ClientSecretPrefix starts every generated client secret, so secret
// scanners recognise one.
const ClientSecretPrefix = "ccs_"

// maxMetadataBytes bounds the metadata kept as given (RFC 7591 fields this
// server does not use, such as contacts or client_uri).
const maxMetadataBytes = 16 << 10

// ClientMetadata is RFC 7591 §2 client metadata, as the admin API and the
// registration endpoint take it.
type ClientMetadata struct {
	RedirectURIs            []string
	TokenEndpointAuthMethod string
	GrantTypes              []string
	ResponseTypes           []string
	ClientName              string
	LogoURI                 string
	// Scope is the space-separated list of scopes (RFC 7591 §2).
	Scope string
	// PostLogoutRedirectURIs are the post_logout_redirect_uris of OpenID
	// Connect RP-Initiated Logout 1.0 §3.1. The record keeps them in its
	// metadata, so every store holds them without a column of their own.
	PostLogoutRedirectURIs []string
	// Fields only an operator sets (the admin API): the client_id and
	// client_secret to use instead of generated ones, and the fields of a
	// configured client that RFC 7591 lacks. The registration endpoint
	// ignores them.
	ClientID     string
	ClientSecret string
	SkipConsent  bool
	Introspect   bool
	Resources    []string
	// Extra is the rest of the metadata object, kept as given.
	Extra map[string]json.RawMessage
}

// metadataFields are the fields ClientMetadata reads; operatorFields those
// of them that only the admin API honours. Every other member goes to Extra.
var (
	metadataFields = []string{"redirect_uris", "token_endpoint_auth_method", "grant_types", "response_types",
		"client_name", "logo_uri", "scope", "post_logout_redirect_uris"}
	operatorFields = []string{"client_id", "client_secret", "skip_consent", "introspect", "resources"}
	// serverFields are response fields a client cannot set.
	serverFields = []string{"client_id_issued_at", "client_secret_expires_at", "registration_access_token",
		"registration_client_uri", "registered_by", "created_at", "updated_at", "expires_at", "previous_secret_expires_at", "type", "source", "id", "scopes"}
)

// ParseClientMetadata reads a client metadata JSON object. operator says
// whether the operator-only fields are read (the admin API) or dropped (the
// registration endpoint). A member of the wrong type is an
// invalid_client_metadata error naming it.
func ParseClientMetadata(body []byte, operator bool) (*ClientMetadata, *MetadataError) {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&obj); err != nil || obj == nil || dec.More() {
		return nil, badField("", errors.New("the body must be one JSON object of client metadata (RFC 7591 §2)"))
	}
	m := &ClientMetadata{Extra: map[string]json.RawMessage{}}
	targets := map[string]any{
		"redirect_uris": &m.RedirectURIs, "token_endpoint_auth_method": &m.TokenEndpointAuthMethod,
		"grant_types": &m.GrantTypes, "response_types": &m.ResponseTypes, "client_name": &m.ClientName,
		"logo_uri": &m.LogoURI, "scope": &m.Scope, "post_logout_redirect_uris": &m.PostLogoutRedirectURIs,
		"client_id": &m.ClientID, "client_secret": &m.ClientSecret, "skip_consent": &m.SkipConsent,
		"introspect": &m.Introspect, "resources": &m.Resources,
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		raw := obj[k]
		switch {
		case slices.Contains(serverFields, k):
			continue // set by the server, never by the client
		case slices.Contains(operatorFields, k) && !operator:
			continue // RFC 7591 §2: the server may ignore what it does not allow
		case targets[k] != nil:
			if string(raw) == "null" {
				continue
			}
			if err := json.Unmarshal(raw, targets[k]); err != nil {
				return nil, badField(k, fmt.Errorf("%s has the wrong type", k))
			}
		default:
			m.Extra[k] = raw
		}
	}
	return m, nil
}

// Scopes returns the requested scopes.
func (m *ClientMetadata) Scopes() []string { return strings.Fields(m.Scope) }

// Public reports whether the metadata asks for a public client.
func (m *ClientMetadata) Public() bool { return m.TokenEndpointAuthMethod == AuthMethodNone }

// secretAuth reports whether the metadata asks for a client secret.
func (m *ClientMetadata) secretAuth() bool {
	return m.TokenEndpointAuthMethod == AuthMethodBasic || m.TokenEndpointAuthMethod == AuthMethodPost
}

// check applies the rules of the metadata that newClient does not know.
func (m *ClientMetadata) check() *MetadataError {
	switch m.TokenEndpointAuthMethod {
	case "":
		// RFC 7591 §2: the default is client_secret_basic.
		m.TokenEndpointAuthMethod = AuthMethodBasic
	case AuthMethodNone, AuthMethodBasic, AuthMethodPost, AuthMethodPrivateKeyJWT:
	default:
		return badField("token_endpoint_auth_method", fmt.Errorf("token_endpoint_auth_method %q is not supported: use none, client_secret_basic, client_secret_post or private_key_jwt", m.TokenEndpointAuthMethod))
	}
	if m.TokenEndpointAuthMethod == AuthMethodPrivateKeyJWT && m.ClientSecret != "" {
		return badField("client_secret", errors.New("a private_key_jwt client has no secret"))
	}
	for _, rt := range m.ResponseTypes {
		if rt != responseTypeCode {
			return badField("response_types", fmt.Errorf("response type %q is not supported: only code", rt))
		}
	}
	// RFC 7591 §2.1: response types and grant types must agree.
	if len(m.ResponseTypes) > 0 && len(m.GrantTypes) > 0 && !slices.Contains(m.GrantTypes, grantAuthorizationCode) {
		return badField("response_types", errors.New("response type code needs the authorization_code grant type"))
	}
	if m.Public() && m.ClientSecret != "" {
		return badField("client_secret", errors.New("a client with token_endpoint_auth_method none has no secret"))
	}
	if m.ClientSecret != "" && (len(m.ClientSecret) < 16 || len(m.ClientSecret) > 72) {
		return badField("client_secret", errors.New("client_secret must have 16 to 72 bytes"))
	}
	extra, err := json.Marshal(m.Extra)
	if err != nil || len(extra) > maxMetadataBytes {
		return badField("", fmt.Errorf("the metadata this server does not use takes more than %d bytes", maxMetadataBytes))
	}
	return nil
}

// metadataBlob is what RegisteredClient.Metadata keeps: the extra members
// and the two fields the record has no column for.
func (m *ClientMetadata) metadataBlob() []byte {
	obj := maps.Clone(m.Extra)
	if obj == nil {
		obj = map[string]json.RawMessage{}
	}
	obj["token_endpoint_auth_method"], _ = json.Marshal(m.TokenEndpointAuthMethod)
	if len(m.ResponseTypes) > 0 {
		obj["response_types"], _ = json.Marshal(m.ResponseTypes)
	}
	if len(m.PostLogoutRedirectURIs) > 0 {
		obj["post_logout_redirect_uris"], _ = json.Marshal(m.PostLogoutRedirectURIs)
	}
	b, _ := json.Marshal(obj)
	return b
}

// NewClientSecret returns a fresh client secret and its bcrypt hash. The
// secret has 256 random bits, so bcrypt's cost buys nothing against
// guessing it; the lowest cost keeps a registration (which anyone may make
// when registration is open) from costing the server tens of milliseconds
// of CPU.
func NewClientSecret() (secret string, hash []byte, err error) {
	if secret, err = token.New(ClientSecretPrefix); err != nil {
		return "", nil, err
	}
	hash, err = bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	return secret, hash, err
}

// hashGivenSecret hashes a secret an operator chose, which may be guessable,
// at bcrypt's default cost.
func hashGivenSecret(secret string) ([]byte, error) {
	return bcrypt.GenerateFromPassword([]byte(secret), bcrypt.DefaultCost)
}

// NewRecord turns metadata into a client record for Registry.Create: the
// ID and secret are generated unless the metadata gives them (operator
// fields), and the secret, when there is one, is returned once. The record
// is validated with the rules of a configured client.
func (g *Registry) NewRecord(m *ClientMetadata, by string, lifetime time.Duration) (*stores.RegisteredClient, string, error) {
	if me := m.check(); me != nil {
		return nil, "", me
	}
	id := m.ClientID
	if id == "" {
		id = token.NewID()
	} else if len(id) > 255 || strings.ContainsAny(id, "\x00\r\n") {
		return nil, "", badField("client_id", errors.New("client_id must have at most 255 bytes and no control characters"))
	}
	now := g.now()
	rc := &stores.RegisteredClient{ID: id, RegisteredBy: by, CreatedAt: now, UpdatedAt: now}
	if lifetime > 0 {
		rc.ExpiresAt = now.Add(lifetime)
	}
	var secret string
	if m.secretAuth() {
		var err error
		if m.ClientSecret != "" {
			secret = m.ClientSecret
			rc.SecretHash, err = hashGivenSecret(secret)
		} else {
			secret, rc.SecretHash, err = NewClientSecret()
		}
		if err != nil {
			return nil, "", err
		}
	}
	g.fill(rc, m)
	if err := g.Validate(rc); err != nil {
		return nil, "", err
	}
	return rc, secret, nil
}

// Apply replaces a record's metadata (an update: RFC 7592 §2.2 and the
// admin API's PUT), keeping its ID, secret and registration, and validates
// the result. A change between public and confidential is refused: that
// takes a new client.
func (g *Registry) Apply(rc *stores.RegisteredClient, m *ClientMetadata) (*stores.RegisteredClient, error) {
	if m.TokenEndpointAuthMethod == "" {
		// Not given: the client's own, not RFC 7591's default.
		m.TokenEndpointAuthMethod, _ = ClientView(rc, false)["token_endpoint_auth_method"].(string)
	}
	if me := m.check(); me != nil {
		return nil, me
	}
	if m.ClientID != "" && m.ClientID != rc.ID {
		return nil, badField("client_id", errors.New("client_id differs from the client's"))
	}
	if m.secretAuth() != (len(rc.SecretHash) > 0) {
		return nil, badField("token_endpoint_auth_method", errors.New("a client cannot change between public and confidential; register a new one"))
	}
	if m.ClientSecret != "" {
		return nil, badField("client_secret", errors.New("rotate the secret instead"))
	}
	next := cloneRecord(rc)
	next.UpdatedAt = g.now()
	g.fill(next, m)
	if err := g.Validate(next); err != nil {
		return nil, err
	}
	return next, nil
}

func (g *Registry) fill(rc *stores.RegisteredClient, m *ClientMetadata) {
	rc.RedirectURIs = slices.Clone(m.RedirectURIs)
	rc.GrantTypes = slices.Clone(m.GrantTypes)
	rc.Scopes = m.Scopes()
	rc.Name = m.ClientName
	rc.LogoURI = m.LogoURI
	rc.SkipConsent = m.SkipConsent
	rc.Introspect = m.Introspect
	rc.Resources = slices.Clone(m.Resources)
	rc.Metadata = m.metadataBlob()
}

// RotateSecret gives a confidential registered client a new secret and
// returns it once; the old one keeps working for grace (0: not at all).
func (g *Registry) RotateSecret(ctx context.Context, id string, grace time.Duration) (string, error) {
	rc, ok := g.Get(id)
	if !ok {
		if g.configured[id] {
			return "", ErrConfiguredClient
		}
		return "", stores.ErrNotFound
	}
	if len(rc.SecretHash) == 0 {
		return "", badField("client_secret", errors.New("a public client has no secret to rotate"))
	}
	secret, hash, err := NewClientSecret()
	if err != nil {
		return "", err
	}
	now := g.now()
	rc.PreviousSecretHash, rc.PreviousSecretExpiresAt = nil, time.Time{}
	if grace > 0 {
		rc.PreviousSecretHash, rc.PreviousSecretExpiresAt = rc.SecretHash, now.Add(grace)
	}
	rc.SecretHash, rc.UpdatedAt = hash, now
	if err := g.Update(ctx, rc); err != nil {
		return "", err
	}
	return secret, nil
}

// ClientView is a client's metadata as the registration endpoint (RFC
// 7591 §3.2.1, RFC 7592 §3) and the admin API answer it: the stored extra
// metadata first, then the fields the server knows. operator adds the
// operator-only fields and how the client was registered.
func ClientView(rc *stores.RegisteredClient, operator bool) map[string]any {
	v := map[string]any{}
	var extra map[string]json.RawMessage
	if json.Unmarshal(rc.Metadata, &extra) == nil {
		for k, raw := range extra {
			v[k] = raw
		}
	}
	method := AuthMethodBasic
	if len(rc.SecretHash) == 0 {
		method = AuthMethodNone
	}
	if raw, ok := extra["token_endpoint_auth_method"]; ok {
		_ = json.Unmarshal(raw, &method)
	}
	grants := rc.GrantTypes
	if len(grants) == 0 {
		grants = DefaultGrantTypes(len(rc.SecretHash) == 0)
	}
	v["client_id"] = rc.ID
	v["client_id_issued_at"] = rc.CreatedAt.Unix()
	v["token_endpoint_auth_method"] = method
	v["redirect_uris"] = orEmpty(rc.RedirectURIs)
	v["grant_types"] = grants
	if _, ok := v["response_types"]; !ok && slices.Contains(grants, grantAuthorizationCode) {
		v["response_types"] = []string{responseTypeCode}
	}
	if rc.Name != "" {
		v["client_name"] = rc.Name
	}
	if rc.LogoURI != "" {
		v["logo_uri"] = rc.LogoURI
	}
	if len(rc.Scopes) > 0 {
		v["scope"] = strings.Join(rc.Scopes, " ")
	}
	if len(rc.SecretHash) > 0 {
		// RFC 7591 §3.2.1: 0 for a secret that does not expire.
		var exp int64
		if !rc.ExpiresAt.IsZero() {
			exp = rc.ExpiresAt.Unix()
		}
		v["client_secret_expires_at"] = exp
	}
	if operator {
		v["skip_consent"] = rc.SkipConsent
		v["introspect"] = rc.Introspect
		v["resources"] = orEmpty(rc.Resources)
		v["registered_by"] = rc.RegisteredBy
		v["created_at"] = rc.CreatedAt.UTC().Format(time.RFC3339)
		v["updated_at"] = rc.UpdatedAt.UTC().Format(time.RFC3339)
		if !rc.ExpiresAt.IsZero() {
			v["expires_at"] = rc.ExpiresAt.UTC().Format(time.RFC3339)
		}
		if !rc.PreviousSecretExpiresAt.IsZero() && len(rc.PreviousSecretHash) > 0 {
			v["previous_secret_expires_at"] = rc.PreviousSecretExpiresAt.UTC().Format(time.RFC3339)
		}
	}
	return v
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
