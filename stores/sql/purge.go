package sql

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/tokengate/caddy-oauth2/purge"
)

// probeKey is no token's key (keys are 64 hex digits): looking it up costs
// the store what the guard's lookup of a live token costs.
const probeKey = "purge-probe"

// probeEvery spaces the lookups that time the store while a batch runs.
const probeEvery = 10 * time.Millisecond

// idleProbes is how many lookups time the store before the first batch.
const idleProbes = 5

// recoverEvery spaces the lookups after a rest that wait for the store to
// answer as fast as before the purge.
const recoverEvery = 50 * time.Millisecond

// purgeTarget is a table purge deletes from, its key column, and whether
// its rows count in purge's result.
type purgeTarget struct {
	table, key string
	counted    bool
}

// purge deletes expired rows of each target, by the database's clock, a
// batch per statement, each statement its own transaction. A purge.Pacer
// sizes the batches and the rests between them from how long each batch took and how fast the
// guard's lookup answered meanwhile, against the same lookup before the
// first batch. Only the holder of the purge lease works; without it purge
// returns 0.
func (e *Engine) purge(ctx context.Context, batch int, targets []purgeTarget) (int64, error) {
	pacer := e.pacer(batch)
	ok, err := e.acquireLease(ctx)
	if err != nil {
		return 0, e.fail("purge lease", err)
	}
	if !ok {
		return 0, nil
	}
	defer e.releaseLease(ctx)
	for range idleProbes {
		if d, err := e.probe(ctx); err == nil {
			pacer.Idle(d)
		}
	}
	var total int64
	for _, t := range targets {
		for {
			n := pacer.Batch()
			started := time.Now()
			stop := e.probeDuring(ctx)
			k, err := e.purgeBatch(ctx, t, n)
			took := time.Since(started)
			lookup := stop()
			if t.counted {
				total += k
			}
			if err != nil {
				return total, e.fail("purge "+t.table, err)
			}
			if k < int64(n) {
				if e.opts.PurgeBatchDone != nil {
					e.opts.PurgeBatchDone(t.table, n, took, lookup, 0)
				}
				break
			}
			pause := pacer.Next(took, lookup)
			if e.opts.PurgeBatchDone != nil {
				e.opts.PurgeBatchDone(t.table, n, took, lookup, pause)
			}
			if !sleep(ctx, pause) || !e.recovered(ctx, pacer) {
				return total, nil
			}
			// Renew, so that a long purge keeps the lease and a lost one
			// stops this purger.
			if ok, err := e.acquireLease(ctx); err != nil {
				return total, e.fail("purge lease", err)
			} else if !ok {
				return total, nil
			}
		}
	}
	return total, nil
}

// recovered waits, up to the pacer's longest rest, until the guard's
// lookup answers as fast as before the purge, and backs the pacer off if
// it never did: one slow lookup on a busy host is noise, a store still slow
// after the longest rest is working off the batch in the background. It
// returns false if ctx ends first.
func (e *Engine) recovered(ctx context.Context, pacer *purge.Pacer) bool {
	for waited := time.Duration(0); waited < pacer.Rest(); waited += recoverEvery {
		if d, err := e.probe(ctx); err != nil || pacer.Fast(d) {
			return ctx.Err() == nil
		}
		if !sleep(ctx, recoverEvery) {
			return false
		}
	}
	pacer.Lagging()
	return true
}

// sleep waits for d or for ctx to end, and says whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pacer paces one purge run. The sql store's own purge_batch fixes the
// batch size; the batch the purger asks for is the first and smallest,
// grown while the store keeps up, within the dialect's cap.
func (e *Engine) pacer(batch int) *purge.Pacer {
	if e.opts.PurgeBatch > 0 {
		n := e.d.batch(e.opts.PurgeBatch)
		return &purge.Pacer{MinBatch: n, MaxBatch: n, MaxDuty: e.d.purgeDuty}
	}
	if batch <= 0 {
		batch = DefaultPurgeBatch
	}
	n := e.d.batch(batch)
	growth := purge.DefaultGrowth
	if e.d.purgeGrowth > 0 {
		growth = e.d.purgeGrowth
	}
	return &purge.Pacer{MinBatch: n, MaxBatch: e.d.batch(n * growth), MaxDuty: e.d.purgeDuty}
}

// purgeBatch deletes up to n expired rows of t and says how many it
// deleted; fewer than n means none are left.
func (e *Engine) purgeBatch(ctx context.Context, t purgeTarget, n int) (int64, error) {
	res, err := e.db.ExecContext(ctx, e.purgeStatement(t.table, t.key, n))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// purgeStatement deletes at most n expired rows of table.
func (e *Engine) purgeStatement(table, key string, n int) string {
	return e.d.counted + e.d.rebind(e.d.deleteBatch(table, key, expiredIs, n))
}

// probe times the guard's lookup of an access token.
func (e *Engine) probe(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	var client, subject, scope, family any
	var issued, expires int64
	err := e.db.QueryRowContext(ctx, e.q.lookupAccess, probeKey, nowMillis()).Scan(&client, &subject, &scope, &family, &issued, &expires)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	return time.Since(start), nil
}

// probeDuring times the guard's lookup every probeEvery until the returned
// function is called, which returns the median latency (0 if none was
// taken). A lookup in flight is let finish: cancelling it would cost some
// drivers the connection.
func (e *Engine) probeDuring(ctx context.Context) func() time.Duration {
	stop := make(chan struct{})
	done := make(chan time.Duration, 1)
	go func() {
		var samples []time.Duration
		t := time.NewTicker(probeEvery)
		defer t.Stop()
		for {
			if d, err := e.probe(ctx); err == nil {
				samples = append(samples, d)
			}
			select {
			case <-stop:
				done <- median(samples)
				return
			case <-ctx.Done():
				done <- median(samples)
				return
			case <-t.C:
			}
		}
	}()
	return func() time.Duration {
		close(stop)
		return <-done
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// acquireLease takes or renews the purge lease.
func (e *Engine) acquireLease(ctx context.Context) (bool, error) {
	res, err := e.db.ExecContext(ctx, e.q.leaseAcquire, e.opts.Holder, leaseName, e.opts.Holder)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n >= 1, err // as in claim
}

// releaseLease lets another gateway purge next without waiting for the
// lease to run out. A failure only delays that.
func (e *Engine) releaseLease(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = e.db.ExecContext(ctx, e.q.leaseRelease, leaseName, e.opts.Holder)
}
