package stores

import (
	"context"
	"time"
)

// SigningKey is a generated JWT signing key as a store keeps it: its
// private half sealed (encrypted) by the caller, never in the clear.
type SigningKey struct {
	// ID is the key id ("kid"), unique.
	ID string
	// Sealed is the encrypted private key; the store keeps it as is.
	Sealed []byte
	// CreatedAt is when the key was made: the newest key signs.
	CreatedAt time.Time
	// ExpiresAt is when no token the key signed can still be live; the
	// key is then no longer returned and may be deleted.
	ExpiresAt time.Time
}

// KeyStore is implemented by stores that can keep the generated signing
// keys of JWT access tokens, so that every gateway sharing the store signs
// with, and publishes, the same keys. The built-in stores all do; an app
// that needs one of a store that does not says so at provisioning.
type KeyStore interface {
	// StartKeys checks (or, with create_schema, creates) what the keys
	// need in the backend, with an error telling what to do when it
	// cannot.
	StartKeys(ctx context.Context) error
	// InsertSigningKey stores a new key, and deletes the keys whose
	// ExpiresAt has passed. IDs are thumbprints of freshly generated keys:
	// a store need not expect one twice.
	InsertSigningKey(ctx context.Context, k *SigningKey) error
	// SigningKeys returns every key whose ExpiresAt has not passed, in no
	// particular order.
	SigningKeys(ctx context.Context) ([]*SigningKey, error)
}
