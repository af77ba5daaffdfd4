// Package purge removes expired codes and tokens from their stores in the
// background, so that stores without their own expiry stay bounded.
package purge

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/stores"
)

// Defaults.
const (
	DefaultBatch = 1000
	// maxTimeout caps the default per-run deadline: a run cut short
	// resumes at the next tick, as deletions are incremental.
	maxTimeout = 10 * time.Minute
)

// Purger removes expired codes and tokens every Interval. Set the fields
// before Start and leave them alone until Stop.
type Purger struct {
	// Interval is the time between runs. Required, > 0.
	Interval time.Duration
	// Batch is the most rows a store deletes per statement. Default: 1000.
	Batch int
	// Codes is the store purged of codes. Nil skips codes.
	Codes stores.CodeStore
	// Tokens is the store purged of tokens. Nil skips tokens. It may be the
	// same object as Codes: codes and tokens are purged separately anyway.
	Tokens stores.TokenStore
	// Once holds the single-use values purged (stores.SingleUse), usually
	// the code store's. Nil skips them.
	Once stores.SingleUse
	// Timeout bounds each run. Default: Interval, at most 10 minutes.
	Timeout time.Duration
	// Logger receives a line per run. Default: none.
	Logger *zap.Logger
	// Observe, when set, is called after every run with its counts,
	// duration and error, for metrics.
	Observe func(codes, tokens int64, took time.Duration, err error)
	// ObserveOnce, when set, is called after every run that purged
	// single-use values, with how many it removed.
	ObserveOnce func(n int64)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts the purging goroutine; the first run is one Interval after.
// It fails if Interval is not positive or the purger is already running.
func (p *Purger) Start() error {
	if p.Interval <= 0 {
		return errors.New("purge interval must be positive")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		return errors.New("purger already started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go p.loop(ctx, p.done)
	return nil
}

// Stop cancels a run in progress and returns once the goroutine has exited.
// Stopping a purger that is not running does nothing.
func (p *Purger) Stop() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel, p.done = nil, nil
	p.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (p *Purger) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, p.timeout())
			_, _, _ = p.run(rctx, ctx)
			cancel()
		}
	}
}

func (p *Purger) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return min(p.Interval, maxTimeout)
}

// RunOnce purges the stores once, now, and returns how many codes and
// tokens it removed. A failing store does not keep the others from being
// purged; the errors are joined.
func (p *Purger) RunOnce(ctx context.Context) (codes, tokens int64, err error) {
	return p.run(ctx, ctx)
}

// run purges under ctx; parent being done means the purger is stopping,
// which is not worth an error line.
func (p *Purger) run(ctx, parent context.Context) (codes, tokens int64, err error) {
	batch := p.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	start := time.Now()
	var errs []error
	if p.Codes != nil {
		n, err := p.Codes.PurgeExpiredCodes(ctx, batch)
		codes = n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if p.Tokens != nil {
		n, err := p.Tokens.PurgeExpiredTokens(ctx, batch)
		tokens = n
		if err != nil {
			errs = append(errs, err)
		}
	}
	var once int64
	if p.Once != nil {
		n, err := p.Once.PurgeExpiredOnce(ctx, batch)
		once = n
		if err != nil {
			errs = append(errs, err)
		}
		if p.ObserveOnce != nil {
			p.ObserveOnce(n)
		}
	}
	err = errors.Join(errs...)
	if p.Observe != nil {
		p.Observe(codes, tokens, time.Since(start), err)
	}
	log := p.Logger
	if log == nil {
		return codes, tokens, err
	}
	fields := []zap.Field{
		zap.Int64("codes_removed", codes),
		zap.Int64("tokens_removed", tokens),
	}
	if p.Once != nil {
		fields = append(fields, zap.Int64("single_use_removed", once))
	}
	fields = append(fields,
		zap.Duration("duration", time.Since(start)),
	)
	switch {
	case err == nil:
		log.Info("purged expired codes and tokens", fields...)
	case parent.Err() != nil:
		log.Info("purge interrupted by shutdown", fields...)
	default:
		log.Error("purging expired codes and tokens", append(fields, zap.Error(err))...)
	}
	return codes, tokens, err
}
