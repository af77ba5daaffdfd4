package sql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// The revocation feed is one table, <prefix>revocations, written once per
// revocation and read by created_at (indexed) by every gateway twice a
// second. Events are stamped with the database's clock and read from the
// reading gateway's last read minus a 2s overlap, so a gateway's clock may
// be that far off the database's. Rows older than stores.RevocationRetention are deleted by
// whichever gateway publishes next, at most once a minute per process.

// feedTable names the feed table.
func (e *Engine) feedTable() string { return e.opts.TablePrefix + "revocations" }

// lastFeedPrune is when this process last pruned each feed table.
var lastFeedPrune sync.Map // table name -> time.Time

// StartFeed checks the feed table, creating it with create_schema: a schema
// applied before the feed existed lacks it.
func (e *Engine) StartFeed(ctx context.Context) error {
	probe := func() error {
		_, err := e.RevocationsSince(ctx, time.Now().Add(time.Hour))
		return err
	}
	err := probe()
	if err == nil {
		return nil
	}
	if perr := e.db.PingContext(ctx); perr != nil {
		return stores.Unavailable(fmt.Errorf("sql store (%s): revocation feed: %w", e.d.name, perr))
	}
	if e.opts.CreateSchema {
		stmts, serr := Schema(e.d.name, e.opts.TablePrefix)
		if serr != nil {
			return serr
		}
		for _, s := range stmts {
			if !strings.Contains(s, e.feedTable()) {
				continue
			}
			if _, xerr := e.db.ExecContext(ctx, s); xerr != nil && probe() != nil {
				return fmt.Errorf("sql store (%s): creating the revocation feed: %s: %w", e.d.name, firstLine(s), xerr)
			}
		}
		if err = probe(); err == nil {
			return nil
		}
	}
	return fmt.Errorf("sql store (%s): the validation cache's revocation feed needs table %s (%v): run its statements at the end of %s%s, or set create_schema",
		e.d.name, e.feedTable(), err, e.SchemaFile(), e.prefixNote())
}

// PublishRevocation records r with the database's time.
func (e *Engine) PublishRevocation(ctx context.Context, r stores.Revocation) error {
	var id [16]byte
	_, _ = rand.Read(id[:])
	t := e.feedTable()
	_, err := e.db.ExecContext(ctx, e.d.rebind("INSERT INTO "+t+" (event_id, event_kind, event_key, client_id, created_at) VALUES (?, ?, ?, ?, {now})"),
		hex.EncodeToString(id[:]), int(r.Kind), nullable(r.Key), nullable(r.ClientID))
	if err != nil {
		return e.fail("publish revocation", err)
	}
	if last, ok := lastFeedPrune.Load(t); !ok || time.Since(last.(time.Time)) > time.Minute {
		lastFeedPrune.Store(t, time.Now())
		// Best effort: a failure leaves old rows to the next prune.
		_, _ = e.db.ExecContext(ctx, e.d.rebind(fmt.Sprintf("DELETE FROM %s WHERE created_at < {now} - %d", t, stores.RevocationRetention.Milliseconds())))
	}
	return nil
}

// RevocationsSince returns the events recorded at or after since.
func (e *Engine) RevocationsSince(ctx context.Context, since time.Time) ([]stores.Revocation, error) {
	rows, err := e.db.QueryContext(ctx, e.d.rebind("SELECT event_id, event_kind, event_key, client_id, created_at FROM "+e.feedTable()+" WHERE created_at >= ?"),
		millis(since))
	if err != nil {
		return nil, e.fail("read revocations", err)
	}
	defer rows.Close()
	var out []stores.Revocation
	for rows.Next() {
		var (
			r           stores.Revocation
			kind        int
			key, client sql.NullString
			at          int64
		)
		if err := rows.Scan(&r.ID, &kind, &key, &client, &at); err != nil {
			return nil, e.fail("read revocations", err)
		}
		r.ID = strings.TrimSpace(r.ID)
		r.Kind, r.Key, r.ClientID, r.At = stores.RevocationKind(kind), key.String, client.String, fromMillis(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, e.fail("read revocations", err)
	}
	return out, nil
}

// Interface guards
var _ stores.RevocationFeed = (*Engine)(nil)
