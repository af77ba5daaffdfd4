package sql

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/tokengate/caddy-oauth2/stores"
)

// StartKeys checks the signing-keys table, which Start's schema check
// (version 3) already vouches for; a table dropped by hand is reported.
func (e *Engine) StartKeys(ctx context.Context) error {
	if _, err := e.SigningKeys(ctx); err != nil {
		if perr := e.db.PingContext(ctx); perr != nil {
			return stores.Unavailable(fmt.Errorf("sql store (%s): signing keys: %w", e.d.name, perr))
		}
		return fmt.Errorf("sql store (%s): JWT signing keys need table %s (%v): apply %s%s, or set create_schema",
			e.d.name, e.tables.keys, err, e.SchemaFile(), e.prefixNote())
	}
	return nil
}

// InsertSigningKey stores k, its sealed bytes base64 encoded, and deletes
// expired keys.
func (e *Engine) InsertSigningKey(ctx context.Context, k *stores.SigningKey) error {
	if _, err := e.db.ExecContext(ctx, e.q.insertKey, k.ID, base64.StdEncoding.EncodeToString(k.Sealed),
		millis(k.CreatedAt), millis(k.ExpiresAt)); err != nil {
		return e.fail("insert signing key", err)
	}
	if _, err := e.db.ExecContext(ctx, e.q.deleteKeys, nowMillis()); err != nil {
		return e.fail("delete expired signing keys", err)
	}
	return nil
}

// SigningKeys returns the keys that have not expired.
func (e *Engine) SigningKeys(ctx context.Context) ([]*stores.SigningKey, error) {
	rows, err := e.db.QueryContext(ctx, e.q.selectKeys, nowMillis())
	if err != nil {
		return nil, e.fail("select signing keys", err)
	}
	defer rows.Close()
	var out []*stores.SigningKey
	for rows.Next() {
		var id, sealed string
		var created, expires int64
		if err := rows.Scan(&id, &sealed, &created, &expires); err != nil {
			return nil, e.fail("select signing keys", err)
		}
		b, err := base64.StdEncoding.DecodeString(sealed)
		if err != nil {
			return nil, fmt.Errorf("sql store (%s): signing key %s is not base64: %v", e.d.name, id, err)
		}
		out = append(out, &stores.SigningKey{ID: id, Sealed: b, CreatedAt: fromMillis(created), ExpiresAt: fromMillis(expires)})
	}
	if err := rows.Err(); err != nil {
		return nil, e.fail("select signing keys", err)
	}
	return out, nil
}

var _ stores.KeyStore = (*Engine)(nil)
