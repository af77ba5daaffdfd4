package lookupcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/stores"
)

// Feed defaults.
const (
	// DefaultFeedInterval is how often a Follower reads the feed.
	DefaultFeedInterval = 500 * time.Millisecond
	// feedOverlap re-reads this much of the feed before the previous read:
	// it covers a revocation committed a little after the time it was
	// stamped with, and clocks (the database's, or Cassandra publishers')
	// this far apart. Events are applied once, by ID.
	feedOverlap = 2 * time.Second
	// maxApply is the most events applied one by one; past it a read
	// flushes the cache instead, which is cheaper and as correct.
	maxApply = 10_000
)

// trusted reports whether cached entries may answer at now.
func (c *Cache) trusted(now time.Time) bool {
	u := c.trustUntil.Load()
	return u == 0 || now.UnixNano() < u
}

// Flush drops every cached token.
func (c *Cache) Flush() {
	c.epoch.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.entries)
		s.mu.Unlock()
	}
}

// evictSubject drops the cached tokens of a resource owner and/or client;
// an empty value matches any.
func (c *Cache) evictSubject(subject, clientID string) {
	c.epoch.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.entries {
			if stores.RevokedBySubject(e.tok.Subject, e.tok.ClientID, subject, clientID) {
				delete(s.entries, k)
			}
		}
		s.mu.Unlock()
	}
}

// apply evicts what one event names.
func (c *Cache) apply(r stores.Revocation) {
	switch r.Kind {
	case stores.RevokedToken:
		c.evict(r.Key)
	case stores.RevokedFamily:
		c.evictFamily(r.Key)
	case stores.RevokedSubject:
		if r.Key == "" && r.ClientID == "" {
			c.Flush()
		} else {
			c.evictSubject(r.Key, r.ClientID)
		}
	case stores.ChangedClient:
		// A registered client changed: no cached token is revoked by it
		// (deleting a client publishes a RevokedSubject of its own); the
		// Follower tells OnClientChange.
	default:
		c.Flush() // a kind from a newer version: assume the worst
	}
}

// Follower keeps a Cache honest across gateways that share a store. It is
// the token store the issuer and guard use: every revocation made through
// it is published to the store's revocation feed once the store has it,
// and a goroutine reads the feed every Interval and evicts what any
// gateway revoked.
//
// The guarantee: a revocation answered to its caller is evicted from every
// gateway's cache within about two intervals, because a cached token only
// answers while the feed was read successfully within the last two
// intervals (past that, lookups go to the store). A read that fails or
// times out flushes the cache, and the log says so once per outage.
type Follower struct {
	*Cache
	// OnClientChange, when set before Start, is called from the reading
	// goroutine with the ID of every registered client that a gateway
	// (this one included) created, changed or deleted (a ChangedClient
	// event), so that the gateway reloads it from the ClientRegistry; it
	// must return quickly. It is called with "" when events may have been
	// missed (the feed was unreadable, fell behind or burst): then every
	// client must be reloaded.
	OnClientChange func(id string)

	feed     stores.RevocationFeed
	interval time.Duration
	logger   *zap.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	polls, failures, flushes, applied atomic.Uint64
}

// NewFollower returns a Follower of feed for c; interval 0 means
// DefaultFeedInterval, a nil logger logs nothing.
func NewFollower(c *Cache, feed stores.RevocationFeed, interval time.Duration, logger *zap.Logger) *Follower {
	if interval <= 0 {
		interval = DefaultFeedInterval
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Follower{Cache: c, feed: feed, interval: interval, logger: logger}
}

// FeedStats counts a Follower's work since it started.
type FeedStats struct {
	Polls, Failures, Flushes, Applied uint64
}

// FeedStats returns the counters (Stats, of the embedded Cache, counts hits).
func (f *Follower) FeedStats() FeedStats {
	return FeedStats{Polls: f.polls.Load(), Failures: f.failures.Load(), Flushes: f.flushes.Load(), Applied: f.applied.Load()}
}

// Start checks the feed and starts reading it. A configuration error
// (the feed's table is missing) is returned; an unreachable backend is
// not: the cache then stays untrusted until the feed answers.
func (f *Follower) Start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != nil {
		return errors.New("revocation feed follower already started")
	}
	if err := f.feed.StartFeed(ctx); err != nil {
		if !errors.Is(err, stores.ErrUnavailable) {
			return err
		}
		f.logger.Error("revocation feed unreachable at start; the validation cache answers nothing until it is read", zap.Error(err))
	}
	// Nothing is trusted until the first read.
	f.trustUntil.Store(time.Now().UnixNano())
	lctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan struct{})
	go f.loop(lctx, f.done)
	return nil
}

// Stop ends the reading goroutine and waits for it.
func (f *Follower) Stop() {
	f.mu.Lock()
	cancel, done := f.cancel, f.done
	f.cancel, f.done = nil, nil
	f.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (f *Follower) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	var (
		since     = time.Now()
		lastRead  = since
		seen      = map[string]time.Time{}
		failed    int
		firstFail error
	)
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, f.interval)
		evs, err := f.feed.RevocationsSince(rctx, since.Add(-feedOverlap))
		cancel()
		if ctx.Err() != nil {
			return
		}
		f.polls.Add(1)
		switch {
		case err != nil:
			f.failures.Add(1)
			f.flush()
			if failed == 0 {
				firstFail = err
				f.logger.Error("revocation feed unreadable: validation cache flushed, and answers nothing until the feed is read again",
					zap.Error(err))
			}
			failed++
		default:
			if failed > 0 {
				f.logger.Warn("revocation feed readable again", zap.Int("failed_reads", failed),
					zap.Duration("outage", time.Since(lastRead)), zap.NamedError("first_error", firstFail))
				failed = 0
				f.clientChanged("") // the unread reads may have held changes
			}
			if time.Since(lastRead) > stores.RevocationRetention-feedOverlap {
				// Events may have been dropped unread.
				f.clientChanged("")
				f.flush()
				f.logger.Warn("revocation feed fell behind its retention: validation cache flushed",
					zap.Duration("since_last_read", time.Since(lastRead)))
			}
			fresh := 0
			for _, r := range evs {
				if _, dup := seen[r.ID]; !dup {
					fresh++
				}
			}
			if fresh > maxApply {
				f.clientChanged("")
				f.flush()
				f.logger.Warn("revocation feed burst: validation cache flushed", zap.Int("events", fresh))
			}
			for _, r := range evs {
				if _, dup := seen[r.ID]; dup {
					continue
				}
				seen[r.ID] = r.At
				if fresh <= maxApply {
					f.Cache.apply(r)
					if r.Kind == stores.ChangedClient && r.Key != "" {
						f.clientChanged(r.Key)
					}
				}
				f.applied.Add(1)
			}
			for id, at := range seen {
				if at.Before(start.Add(-4 * feedOverlap)) {
					delete(seen, id)
				}
			}
			// Entries cached before this read started are checked
			// against every event up to then; trust them for two
			// intervals, so one late read does not empty the cache.
			f.trustUntil.Store(start.Add(2 * f.interval).UnixNano())
			since, lastRead = start, start
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// clientChanged calls OnClientChange, if set.
func (f *Follower) clientChanged(id string) {
	if f.OnClientChange != nil {
		f.OnClientChange(id)
	}
}

func (f *Follower) flush() {
	f.flushes.Add(1)
	f.Cache.Flush()
}

// publish records a revocation that the store has made. The caller's
// revocation fails if the other gateways cannot be told: it is retried,
// and revoking again is harmless.
func (f *Follower) publish(ctx context.Context, r stores.Revocation) error {
	if err := f.feed.PublishRevocation(ctx, r); err != nil {
		return fmt.Errorf("publishing the revocation to the other gateways: %w", stores.Unavailable(err))
	}
	return nil
}

// RevokeToken revokes in the store, evicts here, and tells the others.
func (f *Follower) RevokeToken(ctx context.Context, kind stores.Kind, key string) error {
	if err := f.Cache.RevokeToken(ctx, kind, key); err != nil {
		return err
	}
	return f.publish(ctx, stores.Revocation{Kind: stores.RevokedToken, Key: key})
}

// RevokeFamily revokes in the store, evicts here, and tells the others;
// a refresh-token or code replay comes here too.
func (f *Follower) RevokeFamily(ctx context.Context, family string, until time.Time) error {
	if err := f.Cache.RevokeFamily(ctx, family, until); err != nil {
		return err
	}
	if family == "" {
		return nil
	}
	return f.publish(ctx, stores.Revocation{Kind: stores.RevokedFamily, Key: family})
}

// RevokeSubject revokes everything of a resource owner and/or client in the
// store (the admin revoke), evicts it here, and tells the others.
func (f *Follower) RevokeSubject(ctx context.Context, subject, clientID string, until time.Time) (int64, error) {
	n, err := f.Cache.RevokeSubject(ctx, subject, clientID, until)
	if err != nil {
		return n, err
	}
	return n, f.publish(ctx, stores.Revocation{Kind: stores.RevokedSubject, Key: subject, ClientID: clientID})
}

// Interface guards
var (
	_ stores.TokenStore     = (*Follower)(nil)
	_ stores.SubjectRevoker = (*Follower)(nil)
)
