package cassandra

import (
	"context"
	"errors"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tokengate/caddy-oauth2/stores"
)

// StartKeys checks that the signing_keys table exists; create_schema has
// made it at Start.
func (e *Engine) StartKeys(ctx context.Context) error {
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	var name string
	err = s.Query("SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'signing_keys'", e.cfg.Keyspace).
		Consistency(gocql.One).ScanContext(ctx, &name)
	if errors.Is(err, gocql.ErrNotFound) {
		return fmt.Errorf("cassandra store: JWT signing keys need table %s.signing_keys: load its statement from sql/cassandra/oauth-server.cql, or set create_schema", e.cfg.Keyspace)
	}
	if err != nil {
		return stores.Unavailable(fmt.Errorf("cassandra store: signing keys: %w", err))
	}
	return nil
}

// InsertSigningKey writes k at the write consistency, with a TTL that ends
// at its ExpiresAt, so expired keys delete themselves.
func (e *Engine) InsertSigningKey(ctx context.Context, k *stores.SigningKey) error {
	secs, ok := ttl(k.ExpiresAt)
	if !ok {
		return nil // already expired: nothing to keep
	}
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	err = s.Query("INSERT INTO "+e.cfg.Keyspace+".signing_keys (id, sealed, created_at, expires_at) VALUES (?, ?, ?, ?) USING TTL ?",
		k.ID, k.Sealed, k.CreatedAt, k.ExpiresAt, secs).
		Consistency(e.cfg.Consistency.Write).Idempotent(true).ExecContext(ctx)
	return fail(err)
}

// SigningKeys reads the whole (tiny) table at the read consistency.
func (e *Engine) SigningKeys(ctx context.Context) ([]*stores.SigningKey, error) {
	s, err := e.sess(ctx)
	if err != nil {
		return nil, err
	}
	iter := s.Query("SELECT id, sealed, created_at, expires_at FROM " + e.cfg.Keyspace + ".signing_keys").
		Consistency(e.cfg.Consistency.Read).Idempotent(true).IterContext(ctx)
	now := time.Now()
	var out []*stores.SigningKey
	for {
		k := new(stores.SigningKey)
		if !iter.Scan(&k.ID, &k.Sealed, &k.CreatedAt, &k.ExpiresAt) {
			break
		}
		if now.Before(k.ExpiresAt) {
			out = append(out, k)
		}
	}
	if err := iter.Close(); err != nil {
		return nil, stores.Unavailable(err)
	}
	return out, nil
}

var _ stores.KeyStore = (*Engine)(nil)
