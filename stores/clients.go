package stores

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrExists reports a client ID that is already registered.
var ErrExists = errors.New("already exists")

// How a registered client came to be.
const (
	// RegisteredByAdmin marks a client made through the admin API or CLI.
	RegisteredByAdmin = "admin"
	// RegisteredDynamically marks a client that registered itself
	// (RFC 7591): its name and logo are self-asserted.
	RegisteredDynamically = "dynamic"
)

// RegisteredClient is an OAuth client registered at runtime, as a store
// keeps it. It has every field of a configured client. Secrets and the
// registration access token are kept only as hashes.
type RegisteredClient struct {
	// ID is the client identifier, unique.
	ID string
	// SecretHash is the bcrypt hash of the secret; nil for a public client.
	SecretHash []byte
	// PreviousSecretHash is the bcrypt hash of the secret replaced by the
	// last rotation, accepted until PreviousSecretExpiresAt; nil for none.
	PreviousSecretHash      []byte
	PreviousSecretExpiresAt time.Time
	// The client's registration, with the meaning of issuer.Client's fields.
	RedirectURIs []string
	GrantTypes   []string
	Scopes       []string
	SkipConsent  bool
	Introspect   bool
	Name         string
	LogoURI      string
	Resources    []string
	// RegisteredBy is RegisteredByAdmin or RegisteredDynamically.
	RegisteredBy string
	// RegistrationTokenKey is the token.Hasher key of the RFC 7592
	// registration access token; empty when the client has none.
	RegistrationTokenKey string
	// Metadata is the rest of the client's RFC 7591 metadata as a JSON
	// object (token_endpoint_auth_method, contacts, ...), kept as given so
	// that RFC 7592 reads return it; empty for none. At most 16 KiB.
	Metadata []byte
	// CreatedAt and UpdatedAt are when the client was registered and last
	// changed.
	CreatedAt time.Time
	UpdatedAt time.Time
	// ExpiresAt is when the registration lapses; zero for never. A lapsed
	// client is absent: GetClient and ListClients do not return it, and
	// the purge deletes it.
	ExpiresAt time.Time
}

// ClientRegistry is implemented by stores that keep clients registered at
// runtime, so that every gateway sharing the store serves the same clients.
// The built-in stores all do. Gateways keep the registry in memory and
// learn of changes through the revocation feed (ChangedClient events), so
// nothing on a request's path reads it.
type ClientRegistry interface {
	// StartClients checks (or, with create_schema, creates) what the
	// registry needs in the backend, with an error telling what to do
	// when it cannot.
	StartClients(ctx context.Context) error
	// CreateClient stores a new client; an ID already stored (and not
	// lapsed) gives ErrExists and changes nothing.
	CreateClient(ctx context.Context, c *RegisteredClient) error
	// UpdateClient replaces a stored client whole; an absent one gives
	// ErrNotFound.
	UpdateClient(ctx context.Context, c *RegisteredClient) error
	// DeleteClient removes a client; an absent one gives ErrNotFound.
	DeleteClient(ctx context.Context, id string) error
	// GetClient returns a live client; an absent or lapsed one gives
	// ErrNotFound.
	GetClient(ctx context.Context, id string) (*RegisteredClient, error)
	// ListClients returns every live client, in no particular order.
	ListClients(ctx context.Context) ([]*RegisteredClient, error)
}

// Limits every store enforces on a RegisteredClient, so that one client
// fits in any backend alike.
const (
	// MaxClientID is the longest client ID, in bytes, as the client_id
	// columns of the SQL schema hold.
	MaxClientID = 255
	// MaxClientMetadata is the most Metadata a client may carry, in bytes.
	MaxClientMetadata = 16 << 10
)

// Check reports a client no store keeps: no ID, one too long, metadata
// over MaxClientMetadata, or a list entry that is empty or holds
// whitespace (lists are kept space-separated or as JSON, and none of their
// values, URIs, scopes or grant types, may contain a space).
func (c *RegisteredClient) Check() error {
	switch {
	case c.ID == "":
		return errors.New("registered client without an id")
	case len(c.ID) > MaxClientID:
		return fmt.Errorf("client id longer than %d bytes", MaxClientID)
	case len(c.Metadata) > MaxClientMetadata:
		return fmt.Errorf("client metadata longer than %d bytes", MaxClientMetadata)
	}
	for _, l := range [][]string{c.RedirectURIs, c.GrantTypes, c.Scopes, c.Resources} {
		for _, v := range l {
			if v == "" || strings.ContainsAny(v, " \t\r\n") {
				return fmt.Errorf("client %q: list entry %q is empty or holds whitespace", c.ID, v)
			}
		}
	}
	return nil
}

// Clone returns a deep copy of c; nil lists stay nil and empty ones empty.
func (c *RegisteredClient) Clone() *RegisteredClient {
	d := *c
	d.SecretHash = slices.Clone(c.SecretHash)
	d.PreviousSecretHash = slices.Clone(c.PreviousSecretHash)
	d.RedirectURIs = slices.Clone(c.RedirectURIs)
	d.GrantTypes = slices.Clone(c.GrantTypes)
	d.Scopes = slices.Clone(c.Scopes)
	d.Resources = slices.Clone(c.Resources)
	d.Metadata = slices.Clone(c.Metadata)
	return &d
}

// Lapsed reports whether the registration has lapsed at now.
func (c *RegisteredClient) Lapsed(now time.Time) bool {
	return !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt)
}
