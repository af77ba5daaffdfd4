package cassandra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tokengate/caddy-oauth2/stores"
)

// The clients table is written only by lightweight transactions (INSERT
// IF NOT EXISTS, UPDATE IF EXISTS, DELETE IF ...), never by plain writes,
// so Paxos timestamps never mix with plain ones on its cells (see
// consume). A client with an expiry carries it as TTL, so Cassandra drops
// it itself; expires_at is still checked on every read, for the TTL's one
// second granularity.

const clientCols = "id, registered_by, secret_hash, previous_secret_hash, previous_secret_expires_at, " +
	"redirect_uris, grant_types, scopes, resources, skip_consent, introspect, name, logo_uri, " +
	"registration_token_key, metadata, created_at, updated_at, expires_at"

// StartClients checks that the clients table exists; create_schema has
// made it at Start.
func (e *Engine) StartClients(ctx context.Context) error {
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	var name string
	err = s.Query("SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'clients'", e.cfg.Keyspace).
		Consistency(gocql.One).ScanContext(ctx, &name)
	if errors.Is(err, gocql.ErrNotFound) {
		return fmt.Errorf("cassandra store: registered clients need table %s.clients: load its statements from sql/cassandra/oauth-server.cql, or set create_schema", e.cfg.Keyspace)
	}
	if err != nil {
		return stores.Unavailable(fmt.Errorf("cassandra store: registered clients: %w", err))
	}
	return nil
}

// clientValues returns c's values in clientCols order.
func clientValues(c *stores.RegisteredClient) []any {
	list := func(l []string) any {
		if l == nil {
			return nil
		}
		b, _ := json.Marshal(l) // strings always marshal
		return string(b)
	}
	blob := func(b []byte) any {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	return []any{c.ID, c.RegisteredBy, blob(c.SecretHash), blob(c.PreviousSecretHash), c.PreviousSecretExpiresAt,
		list(c.RedirectURIs), list(c.GrantTypes), list(c.Scopes), list(c.Resources), c.SkipConsent, c.Introspect,
		c.Name, c.LogoURI, c.RegistrationTokenKey, blob(c.Metadata), c.CreatedAt, c.UpdatedAt, c.ExpiresAt}
}

// clientTTL is the TTL of a client's row: 0 (none) for a client that never
// lapses; false for one that has lapsed already.
func clientTTL(c *stores.RegisteredClient) (int, bool) {
	if c.ExpiresAt.IsZero() {
		return 0, true
	}
	return ttl(c.ExpiresAt)
}

// CreateClient inserts c if no live client has its ID. The INSERT ... IF
// NOT EXISTS is a Paxos round at the serial consistency, so exactly one of
// concurrent creates wins. A lapsed row its TTL has not dropped yet is
// deleted (conditionally, on the version read) and the insert tried again.
func (e *Engine) CreateClient(ctx context.Context, c *stores.RegisteredClient) error {
	if err := c.Check(); err != nil {
		return err
	}
	secs, ok := clientTTL(c)
	if !ok {
		// Lapsed on arrival: nothing to store, but a live client of the
		// ID still makes it a duplicate.
		if _, err := e.GetClient(ctx, c.ID); err == nil {
			return stores.ErrExists
		} else if !errors.Is(err, stores.ErrNotFound) {
			return err
		}
		return nil
	}
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	ks := e.cfg.Keyspace
	insert := "INSERT INTO " + ks + ".clients (" + clientCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
	for range 3 {
		prev := map[string]any{}
		applied, err := s.Query(insert, append(clientValues(c), secs)...).
			Consistency(e.commit).SerialConsistency(e.cfg.Consistency.Serial).MapScanCASContext(ctx, prev)
		if err != nil {
			return stores.Unavailable(err)
		}
		if applied {
			return nil
		}
		created, _ := prev["created_at"].(time.Time)
		expires, _ := prev["expires_at"].(time.Time)
		updated, _ := prev["updated_at"].(time.Time)
		if !created.IsZero() && (expires.IsZero() || time.Now().Before(expires)) {
			return stores.ErrExists
		}
		if _, err := s.Query("DELETE FROM "+ks+".clients WHERE id = ? IF updated_at = ?", c.ID, updated).
			Consistency(e.commit).SerialConsistency(e.cfg.Consistency.Serial).MapScanCASContext(ctx, map[string]any{}); err != nil {
			return stores.Unavailable(err)
		}
	}
	return stores.Unavailable(fmt.Errorf("creating client %q: a lapsed registration of the id kept coming back", c.ID))
}

// UpdateClient replaces a live client whole, by a conditional UPDATE.
func (e *Engine) UpdateClient(ctx context.Context, c *stores.RegisteredClient) error {
	if err := c.Check(); err != nil {
		return err
	}
	if _, err := e.GetClient(ctx, c.ID); err != nil {
		return err
	}
	secs, ok := clientTTL(c)
	if !ok {
		// Updated into the past: it lapses now.
		return e.DeleteClient(ctx, c.ID)
	}
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	v := clientValues(c)
	args := append([]any{secs}, v[1:]...)
	args = append(args, c.ID)
	applied, err := s.Query("UPDATE "+e.cfg.Keyspace+".clients USING TTL ? SET registered_by = ?, secret_hash = ?, "+
		"previous_secret_hash = ?, previous_secret_expires_at = ?, redirect_uris = ?, grant_types = ?, scopes = ?, "+
		"resources = ?, skip_consent = ?, introspect = ?, name = ?, logo_uri = ?, registration_token_key = ?, "+
		"metadata = ?, created_at = ?, updated_at = ?, expires_at = ? WHERE id = ? IF EXISTS", args...).
		Consistency(e.commit).SerialConsistency(e.cfg.Consistency.Serial).MapScanCASContext(ctx, map[string]any{})
	if err != nil {
		return stores.Unavailable(err)
	}
	if !applied {
		return stores.ErrNotFound
	}
	return nil
}

// DeleteClient deletes a live client, by a conditional DELETE.
func (e *Engine) DeleteClient(ctx context.Context, id string) error {
	if _, err := e.GetClient(ctx, id); err != nil {
		return err
	}
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	applied, err := s.Query("DELETE FROM "+e.cfg.Keyspace+".clients WHERE id = ? IF EXISTS", id).
		Consistency(e.commit).SerialConsistency(e.cfg.Consistency.Serial).MapScanCASContext(ctx, map[string]any{})
	if err != nil {
		return stores.Unavailable(err)
	}
	if !applied {
		return stores.ErrNotFound
	}
	return nil
}

// GetClient reads a client at the serial consistency, which sees every
// committed transaction, so a gateway told of a change reads the change.
func (e *Engine) GetClient(ctx context.Context, id string) (*stores.RegisteredClient, error) {
	s, err := e.sess(ctx)
	if err != nil {
		return nil, err
	}
	iter := s.Query("SELECT "+clientCols+" FROM "+e.cfg.Keyspace+".clients WHERE id = ?", id).
		Consistency(e.cfg.Consistency.Serial).Idempotent(true).IterContext(ctx)
	c, ok, err := scanClient(iter)
	if cerr := iter.Close(); cerr != nil {
		return nil, stores.Unavailable(cerr)
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, stores.ErrNotFound
	}
	return c, nil
}

// ListClients reads the whole table at the read consistency (Cassandra
// allows no serial read across partitions).
func (e *Engine) ListClients(ctx context.Context) ([]*stores.RegisteredClient, error) {
	s, err := e.sess(ctx)
	if err != nil {
		return nil, err
	}
	iter := s.Query("SELECT " + clientCols + " FROM " + e.cfg.Keyspace + ".clients").
		Consistency(e.cfg.Consistency.Read).Idempotent(true).PageSize(1000).IterContext(ctx)
	var out []*stores.RegisteredClient
	for {
		c, ok, err := scanClient(iter)
		if err != nil {
			_ = iter.Close()
			return nil, err
		}
		if c == nil && !ok {
			break
		}
		if ok {
			out = append(out, c)
		}
	}
	if err := iter.Close(); err != nil {
		return nil, stores.Unavailable(err)
	}
	return out, nil
}

// scanClient reads the next row: a nil client and false at the end, a
// client and false for a row that is lapsed or left without its cells
// (an update with a shorter TTL than the insert's row marker).
func scanClient(iter *gocql.Iter) (*stores.RegisteredClient, bool, error) {
	var (
		c                                      stores.RegisteredClient
		redirects, grants, scopes, resources   string
		secret, prevSecret, metadata           []byte
		prevExpires, created, updated, expires time.Time
	)
	if !iter.Scan(&c.ID, &c.RegisteredBy, &secret, &prevSecret, &prevExpires, &redirects, &grants, &scopes, &resources,
		&c.SkipConsent, &c.Introspect, &c.Name, &c.LogoURI, &c.RegistrationTokenKey, &metadata, &created, &updated, &expires) {
		return nil, false, nil
	}
	if created.IsZero() || (!expires.IsZero() && !time.Now().Before(expires)) {
		return &c, false, nil
	}
	var err error
	list := func(s string) []string {
		if s == "" {
			return nil
		}
		l := []string{}
		if jerr := json.Unmarshal([]byte(s), &l); jerr != nil && err == nil {
			err = fmt.Errorf("cassandra store: client %q: a list column is not a JSON array: %w", c.ID, jerr)
		}
		return l
	}
	c.RedirectURIs, c.GrantTypes, c.Scopes, c.Resources = list(redirects), list(grants), list(scopes), list(resources)
	if len(secret) > 0 {
		c.SecretHash = secret
	}
	if len(prevSecret) > 0 {
		c.PreviousSecretHash = prevSecret
	}
	if len(metadata) > 0 {
		c.Metadata = metadata
	}
	c.PreviousSecretExpiresAt, c.CreatedAt, c.UpdatedAt, c.ExpiresAt = prevExpires, created, updated, expires
	if err != nil {
		return nil, false, err
	}
	return &c, true, nil
}

var _ stores.ClientRegistry = (*Engine)(nil)
