package cassandra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tokengate/caddy-oauth2/stores"
)

// The revocation feed is the table revocations: one partition per minute,
// written at the write consistency and read at the read consistency, so at
// QUORUM/QUORUM a gateway reads every event another wrote. Times are the
// publishing gateway's clock; keep gateways' clocks within a second (NTP).
// Rows carry the table's ten-minute default TTL.

// feedBucket is the partition of the minute t falls in.
func feedBucket(t time.Time) int64 { return t.Unix() / 60 }

// StartFeed checks that the revocations table exists; create_schema has
// made it at Start.
func (e *Engine) StartFeed(ctx context.Context) error {
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	var name string
	err = s.Query("SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'revocations'", e.cfg.Keyspace).
		Consistency(gocql.One).ScanContext(ctx, &name)
	if errors.Is(err, gocql.ErrNotFound) {
		return fmt.Errorf("cassandra store: the validation cache's revocation feed needs table %s.revocations: load its statement from sql/cassandra/oauth-server.cql, or set create_schema", e.cfg.Keyspace)
	}
	if err != nil {
		return stores.Unavailable(fmt.Errorf("cassandra store: revocation feed: %w", err))
	}
	return nil
}

// PublishRevocation records r at the write consistency.
func (e *Engine) PublishRevocation(ctx context.Context, r stores.Revocation) error {
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	now := time.Now()
	err = s.Query("INSERT INTO "+e.cfg.Keyspace+".revocations (bucket, at, id, kind, key, client_id) VALUES (?, ?, ?, ?, ?, ?)",
		feedBucket(now), now, hex.EncodeToString(id[:]), int(r.Kind), r.Key, r.ClientID).
		Consistency(e.cfg.Consistency.Write).Idempotent(true).ExecContext(ctx)
	return fail(err)
}

// RevocationsSince reads the minutes from since to now: one partition,
// two across a minute boundary.
func (e *Engine) RevocationsSince(ctx context.Context, since time.Time) ([]stores.Revocation, error) {
	s, err := e.sess(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if oldest := now.Add(-stores.RevocationRetention); since.Before(oldest) {
		since = oldest
	}
	var out []stores.Revocation
	// A publisher a second ahead may have started the next minute.
	for b := feedBucket(since); b <= feedBucket(now.Add(time.Second)); b++ {
		iter := s.Query("SELECT id, kind, key, client_id, at FROM "+e.cfg.Keyspace+".revocations WHERE bucket = ? AND at >= ?", b, since).
			Consistency(e.cfg.Consistency.Read).Idempotent(true).IterContext(ctx)
		var (
			r    stores.Revocation
			kind int
		)
		for iter.Scan(&r.ID, &kind, &r.Key, &r.ClientID, &r.At) {
			r.Kind = stores.RevocationKind(kind)
			out = append(out, r)
		}
		if err := iter.Close(); err != nil {
			return nil, stores.Unavailable(fmt.Errorf("cassandra store: read revocations: %w", err))
		}
	}
	return out, nil
}

// Interface guards
var _ stores.RevocationFeed = (*Engine)(nil)
