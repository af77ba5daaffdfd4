package sql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/tokengate/caddy-oauth2/stores"
)

// clientCols are the columns of the clients table (version 4), in the
// order insertClient binds and the selects return them.
const clientCols = "client_id, registered_by, secret_hash, previous_secret_hash, previous_secret_expires_at, " +
	"redirect_uris, grant_types, scopes, resources, skip_consent, introspect, client_name, logo_uri, " +
	"registration_token_key, metadata, created_at, updated_at, expires_at"

// clientLive is the condition of a client that has not lapsed; a NULL
// expires_at never lapses.
const clientLive = "(expires_at IS NULL OR expires_at > ?)"

func clientStatements(st *statements, d *dialect, t tables) {
	r := d.rebind
	c := func(q string) string { return d.counted + d.rebind(q) }
	st.insertClient = r("INSERT INTO " + t.clients + " (" + clientCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	st.selectClient = r("SELECT " + clientCols + " FROM " + t.clients + " WHERE client_id = ? AND " + clientLive)
	st.listClients = r("SELECT " + clientCols + " FROM " + t.clients + " WHERE expires_at IS NULL OR expires_at > ?")
	st.updateClient = c("UPDATE " + t.clients + " SET registered_by = ?, secret_hash = ?, previous_secret_hash = ?, " +
		"previous_secret_expires_at = ?, redirect_uris = ?, grant_types = ?, scopes = ?, resources = ?, " +
		"skip_consent = ?, introspect = ?, client_name = ?, logo_uri = ?, registration_token_key = ?, metadata = ?, " +
		"created_at = ?, updated_at = ?, expires_at = ? WHERE client_id = ? AND " + clientLive)
	st.deleteClient = c("DELETE FROM " + t.clients + " WHERE client_id = ? AND " + clientLive)
	st.deleteLapsedClient = r("DELETE FROM " + t.clients + " WHERE client_id = ? AND expires_at <= ?")
}

// StartClients checks the clients table, which Start's schema check
// (version 4) already vouches for; a table dropped by hand is reported.
func (e *Engine) StartClients(ctx context.Context) error {
	if _, err := e.ListClients(ctx); err != nil {
		if perr := e.db.PingContext(ctx); perr != nil {
			return stores.Unavailable(fmt.Errorf("sql store (%s): registered clients: %w", e.d.name, perr))
		}
		return fmt.Errorf("sql store (%s): registered clients need table %s (%v): apply %s%s, or set create_schema",
			e.d.name, e.tables.clients, err, e.SchemaFile(), e.prefixNote())
	}
	return nil
}

// CreateClient inserts c. The primary key decides between concurrent
// creates of one ID; a lapsed client of that ID is deleted first.
func (e *Engine) CreateClient(ctx context.Context, c *stores.RegisteredClient) error {
	args, err := clientArgs(c)
	if err != nil {
		return err
	}
	now := nowMillis()
	if _, err := e.db.ExecContext(ctx, e.q.deleteLapsedClient, c.ID, now); err != nil {
		return e.fail("delete lapsed client", err)
	}
	if _, err := e.db.ExecContext(ctx, e.q.insertClient, args...); err != nil {
		// Each system words a duplicate key its own way: a live row of
		// this ID is what makes it one.
		if _, gerr := e.GetClient(ctx, c.ID); gerr == nil {
			return stores.ErrExists
		}
		return e.fail("insert client", err)
	}
	return nil
}

// UpdateClient replaces a live client whole.
func (e *Engine) UpdateClient(ctx context.Context, c *stores.RegisteredClient) error {
	args, err := clientArgs(c)
	if err != nil {
		return err
	}
	// The SET list is clientCols after the ID; then the ID and the clock.
	args = append(append(args[1:], c.ID), nowMillis())
	res, err := e.db.ExecContext(ctx, e.q.updateClient, args...)
	if err != nil {
		return e.fail("update client", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return e.fail("update client", err)
	} else if n == 0 {
		return stores.ErrNotFound
	}
	return nil
}

// DeleteClient deletes a live client.
func (e *Engine) DeleteClient(ctx context.Context, id string) error {
	res, err := e.db.ExecContext(ctx, e.q.deleteClient, id, nowMillis())
	if err != nil {
		return e.fail("delete client", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return e.fail("delete client", err)
	} else if n == 0 {
		return stores.ErrNotFound
	}
	return nil
}

// GetClient returns a live client.
func (e *Engine) GetClient(ctx context.Context, id string) (*stores.RegisteredClient, error) {
	c, err := scanClient(e.db.QueryRowContext(ctx, e.q.selectClient, id, nowMillis()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, stores.ErrNotFound
	}
	if err != nil {
		return nil, e.fail("read client", err)
	}
	return c, nil
}

// ListClients returns every live client.
func (e *Engine) ListClients(ctx context.Context) ([]*stores.RegisteredClient, error) {
	rows, err := e.db.QueryContext(ctx, e.q.listClients, nowMillis())
	if err != nil {
		return nil, e.fail("list clients", err)
	}
	defer rows.Close()
	var out []*stores.RegisteredClient
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, e.fail("list clients", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, e.fail("list clients", err)
	}
	return out, nil
}

// clientArgs returns c's values in clientCols order. Lists are JSON arrays
// (NULL for nil, so nil and empty stay apart on every system, Oracle's
// empty string included); absent times are NULL.
func clientArgs(c *stores.RegisteredClient) ([]any, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	if !utf8.Valid(c.Metadata) {
		return nil, fmt.Errorf("client %q: metadata is not UTF-8", c.ID)
	}
	list := func(l []string) any {
		if l == nil {
			return nil
		}
		b, _ := json.Marshal(l) // strings always marshal
		return string(b)
	}
	optMillis := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return millis(t)
	}
	flag := func(b bool) int64 {
		if b {
			return 1
		}
		return 0
	}
	return []any{
		c.ID, c.RegisteredBy, nullable(string(c.SecretHash)), nullable(string(c.PreviousSecretHash)),
		optMillis(c.PreviousSecretExpiresAt),
		list(c.RedirectURIs), list(c.GrantTypes), list(c.Scopes), list(c.Resources),
		flag(c.SkipConsent), flag(c.Introspect), nullable(c.Name), nullable(c.LogoURI),
		nullable(c.RegistrationTokenKey), nullable(string(c.Metadata)),
		millis(c.CreatedAt), millis(c.UpdatedAt), optMillis(c.ExpiresAt),
	}, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanClient(row scanner) (*stores.RegisteredClient, error) {
	var (
		c                                                  stores.RegisteredClient
		secret, prevSecret, redirects, grants, scopes, res sql.NullString
		name, logo, tokenKey, metadata                     sql.NullString
		prevExpires, expires                               sql.NullInt64
		skip, introspect, created, updated                 int64
	)
	if err := row.Scan(&c.ID, &c.RegisteredBy, &secret, &prevSecret, &prevExpires,
		&redirects, &grants, &scopes, &res, &skip, &introspect, &name, &logo,
		&tokenKey, &metadata, &created, &updated, &expires); err != nil {
		return nil, err
	}
	var err error
	list := func(s sql.NullString) []string {
		if !s.Valid {
			return nil
		}
		l := []string{}
		if jerr := json.Unmarshal([]byte(s.String), &l); jerr != nil && err == nil {
			err = fmt.Errorf("client %q: a list column is not a JSON array: %w", c.ID, jerr)
		}
		return l
	}
	bytes := func(s sql.NullString) []byte {
		if !s.Valid || s.String == "" {
			return nil
		}
		return []byte(s.String)
	}
	optTime := func(n sql.NullInt64) time.Time {
		if !n.Valid {
			return time.Time{}
		}
		return fromMillis(n.Int64)
	}
	c.SecretHash, c.PreviousSecretHash = bytes(secret), bytes(prevSecret)
	c.PreviousSecretExpiresAt = optTime(prevExpires)
	c.RedirectURIs, c.GrantTypes, c.Scopes, c.Resources = list(redirects), list(grants), list(scopes), list(res)
	c.SkipConsent, c.Introspect = skip != 0, introspect != 0
	c.Name, c.LogoURI, c.RegistrationTokenKey = name.String, logo.String, tokenKey.String
	c.Metadata = bytes(metadata)
	c.CreatedAt, c.UpdatedAt, c.ExpiresAt = fromMillis(created), fromMillis(updated), optTime(expires)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

var _ stores.ClientRegistry = (*Engine)(nil)
