package sql

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// Single-use values (stores.SingleUse, version 5) live in one table. The
// primary key decides between concurrent puts, a conditional UPDATE between
// concurrent takes, as for codes. Rows are keyed by the hex SHA-256 of the
// caller's key, which fits CHAR(64) and compares byte for byte on every
// system whatever its collation; values are base64 text, as signing keys are.

func onceStatements(st *statements, d *dialect, t tables) {
	r := d.rebind
	st.deleteExpiredOnce = r("DELETE FROM " + t.once + " WHERE once_key = ? AND expires_at <= ?")
	st.insertOnce = r("INSERT INTO " + t.once + " (once_key, once_value, used, expires_at) VALUES (?, ?, 0, ?)")
	st.takeOnce = d.counted + r("UPDATE "+t.once+" SET used = 1 WHERE once_key = ? AND used = 0 AND expires_at > ?")
	st.selectOnce = r("SELECT once_value, used, expires_at FROM " + t.once + " WHERE once_key = ?")
}

func onceKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// PutOnce stores value under key until expiresAt unless a live value is
// there; see stores.SingleUse. An expired row of the key is deleted first.
func (e *Engine) PutOnce(ctx context.Context, key string, value []byte, expiresAt time.Time) error {
	if key == "" {
		return errors.New("sql store: empty single-use key")
	}
	if len(value) > stores.MaxSingleUseValue {
		return fmt.Errorf("sql store: single-use value of %d bytes exceeds %d", len(value), stores.MaxSingleUseValue)
	}
	k := onceKey(key)
	now := nowMillis()
	if _, err := e.db.ExecContext(ctx, e.q.deleteExpiredOnce, k, now); err != nil {
		return e.fail("delete expired single-use value", err)
	}
	_, err := e.db.ExecContext(ctx, e.q.insertOnce, k, nullable(base64.StdEncoding.EncodeToString(value)), millis(expiresAt))
	if err == nil {
		return nil
	}
	// Each system words a duplicate key its own way: a row of this key
	// that is still live is what makes it one.
	if _, _, exp, serr := e.selectOnce(ctx, k); serr == nil && exp > now {
		return stores.ErrExists
	}
	return e.fail("insert single-use value", err)
}

// TakeOnce marks a live value used and returns it; see stores.SingleUse.
func (e *Engine) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	k := onceKey(key)
	now := nowMillis()
	won, err := e.claim(ctx, e.q.takeOnce, k, now)
	if err != nil {
		return nil, e.fail("take single-use value", err)
	}
	value, used, exp, err := e.selectOnce(ctx, k)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, stores.ErrNotFound
	case err != nil:
		return nil, e.fail("read single-use value", err)
	case won:
		return value, nil
	case exp <= now:
		return nil, stores.ErrNotFound
	case used:
		return nil, stores.ErrConsumed
	}
	return nil, stores.ErrNotFound
}

func (e *Engine) selectOnce(ctx context.Context, k string) (value []byte, used bool, expires int64, err error) {
	var v sql.NullString
	var u int64
	if err := e.db.QueryRowContext(ctx, e.q.selectOnce, k).Scan(&v, &u, &expires); err != nil {
		return nil, false, 0, err
	}
	value, err = base64.StdEncoding.DecodeString(v.String)
	if err != nil {
		return nil, false, 0, fmt.Errorf("single-use value is not base64: %w", err)
	}
	return value, u != 0, expires, nil
}

// PurgeExpiredOnce deletes expired single-use values in batches.
func (e *Engine) PurgeExpiredOnce(ctx context.Context, batch int) (int64, error) {
	return e.purge(ctx, batch, []purgeTarget{{e.tables.once, "once_key", true}})
}
