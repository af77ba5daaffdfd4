package stores

import (
	"context"
	"time"
)

// RevocationKind says what a revocation event names.
type RevocationKind uint8

// The revocation kinds.
const (
	// RevokedToken names one token by its key.
	RevokedToken RevocationKind = iota + 1
	// RevokedFamily names a grant family: every token issued from one
	// authorization code and its refreshes.
	RevokedFamily
	// RevokedSubject names a resource owner and/or a client: every token
	// of theirs (the admin revoke by user).
	RevokedSubject
	// ChangedClient names a registered client (Key is its ID) that was
	// created, changed or deleted: readers reload it from the
	// ClientRegistry. Older readers, which know no such kind, flush their
	// cache, which is safe.
	ChangedClient
)

// Revocation is one event of a revocation feed. It carries keys, families,
// subjects and client ids, never a raw token.
type Revocation struct {
	// ID is unique per event; readers use it to skip events seen in an
	// earlier, overlapping read. The store sets it.
	ID   string
	Kind RevocationKind
	// Key is the token key (RevokedToken), the family (RevokedFamily) or
	// the subject, possibly empty (RevokedSubject).
	Key string
	// ClientID is the client of a RevokedSubject event, possibly empty.
	ClientID string
	// At is when the event was recorded. The store sets it.
	At time.Time
}

// RevocationFeed is implemented by stores that several gateways share, so
// that a revocation made through one gateway reaches the validation caches
// of all of them quickly: each gateway publishes what it revokes and polls
// for what the others revoked. Events are kept for RevocationRetention at
// least, then dropped by the store.
type RevocationFeed interface {
	// StartFeed checks (or, with create_schema, creates) what the feed
	// needs in the backend. A store that cannot offer the feed says so
	// here, with an error telling what to do.
	StartFeed(ctx context.Context) error
	// PublishRevocation records r; the store sets its ID and At.
	PublishRevocation(ctx context.Context, r Revocation) error
	// RevocationsSince returns the events recorded at or after since, in
	// no particular order. One cheap indexed read: readers call it every
	// few hundred milliseconds.
	RevocationsSince(ctx context.Context, since time.Time) ([]Revocation, error)
}

// RevocationRetention is how long a store keeps revocation events. A
// reader that has not read the feed for longer than this has lost events
// and must assume anything was revoked.
const RevocationRetention = 10 * time.Minute
