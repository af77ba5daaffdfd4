package cassandra

import (
	"context"
	"errors"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tokengate/caddy-oauth2/stores"
)

// Single-use values (stores.SingleUse) live in the single_use table, one
// partition per key, written USING TTL of the value's remaining life and
// only by lightweight transactions, so Paxos decides every race: between
// two puts of a key the INSERT ... IF NOT EXISTS, between two takes the
// UPDATE ... IF used = false. A transaction that times out may have
// applied: the caller gets ErrUnavailable, never a second success.

// onceTries bounds the rounds of a put or take that keeps finding the row
// replaced under it (an expired value put again meanwhile).
const onceTries = 3

// PutOnce stores value under key until expiresAt unless a live value is
// there; see stores.SingleUse. A value already expired is not written.
func (e *Engine) PutOnce(ctx context.Context, key string, value []byte, expiresAt time.Time) error {
	if key == "" {
		return errors.New("cassandra store: empty single-use key")
	}
	if len(value) > stores.MaxSingleUseValue {
		return fmt.Errorf("cassandra store: single-use value of %d bytes exceeds %d", len(value), stores.MaxSingleUseValue)
	}
	if value == nil {
		value = []byte{} // not null, which would write a tombstone
	}
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	for range onceTries {
		secs, ok := ttl(expiresAt)
		if !ok {
			return nil
		}
		prev := map[string]any{}
		applied, err := s.Query(e.q.putOnce, key, value, expiresAt, secs).
			Consistency(e.commit).SerialConsistency(e.cfg.Consistency.Serial).MapScanCASContext(ctx, prev)
		if err != nil {
			return stores.Unavailable(err)
		}
		if applied {
			return nil
		}
		old, _ := prev["expires_at"].(time.Time)
		if live(old) {
			return stores.ErrExists
		}
		// Expired, but not yet dropped (TTLs count whole seconds): replace
		// it unless another put has.
		var oldArg any
		if !old.IsZero() {
			oldArg = old
		}
		applied, err = s.Query(e.q.replaceOnce, secs, value, expiresAt, key, oldArg).
			Consistency(e.commit).SerialConsistency(e.cfg.Consistency.Serial).MapScanCASContext(ctx, map[string]any{})
		if err != nil {
			return stores.Unavailable(err)
		}
		if applied {
			return nil
		}
	}
	return stores.ErrExists
}

// TakeOnce marks a live value used and returns it; see stores.SingleUse.
func (e *Engine) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	s, err := e.sess(ctx)
	if err != nil {
		return nil, err
	}
	for range onceTries {
		var (
			value []byte
			used  bool
			exp   time.Time
		)
		err := s.Query(e.q.getOnce, key).Consistency(e.cfg.Consistency.Read).Idempotent(true).
			ScanContext(ctx, &value, &used, &exp)
		switch {
		case errors.Is(err, gocql.ErrNotFound):
			return nil, stores.ErrNotFound
		case err != nil:
			return nil, stores.Unavailable(err)
		case !live(exp):
			return nil, stores.ErrNotFound
		case used:
			return nil, stores.ErrConsumed
		}
		secs, ok := ttl(exp)
		if !ok {
			return nil, stores.ErrNotFound
		}
		// The read may be stale: the transaction decides, and only for the
		// value read (the same expiry).
		prev := map[string]any{}
		applied, err := s.Query(e.q.takeOnce, secs, key, exp).
			Consistency(e.commit).SerialConsistency(e.cfg.Consistency.Serial).MapScanCASContext(ctx, prev)
		if err != nil {
			return nil, stores.Unavailable(err)
		}
		if applied {
			if value == nil {
				value = []byte{}
			}
			return value, nil
		}
		if u, _ := prev["used"].(bool); u {
			return nil, stores.ErrConsumed
		}
		if _, there := prev["expires_at"].(time.Time); !there {
			return nil, stores.ErrNotFound
		}
		// Replaced by a new value since the read: read again.
	}
	return nil, stores.ErrNotFound
}

// PurgeExpiredOnce has nothing to do: single-use values expire by TTL. It
// returns 0.
func (e *Engine) PurgeExpiredOnce(ctx context.Context, batch int) (int64, error) { return 0, nil }

// Interface guards
var _ stores.SingleUse = (*Engine)(nil)
