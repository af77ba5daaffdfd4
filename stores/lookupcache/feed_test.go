package lookupcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// memFeed is a revocation feed in memory, shared by the followers of a test.
type memFeed struct {
	mu   sync.Mutex
	evs  []stores.Revocation
	fail error
	n    int
}

func (m *memFeed) StartFeed(context.Context) error { return nil }

func (m *memFeed) PublishRevocation(_ context.Context, r stores.Revocation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.n++
	r.ID, r.At = fmt.Sprint(m.n), time.Now()
	m.evs = append(m.evs, r)
	return nil
}

func (m *memFeed) RevocationsSince(_ context.Context, since time.Time) ([]stores.Revocation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var out []stores.Revocation
	for _, r := range m.evs {
		if !r.At.Before(since) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memFeed) setFail(err error) {
	m.mu.Lock()
	m.fail = err
	m.mu.Unlock()
}

// twoGateways returns two followers over one store and one feed, started.
func twoGateways(t *testing.T, interval time.Duration) (*fakeStore, *memFeed, *Follower, *Follower) {
	store, feed := newFake(), &memFeed{}
	a := NewFollower(New(store, time.Minute, 1000), feed, interval, nil)
	b := NewFollower(New(store, time.Minute, 1000), feed, interval, nil)
	for _, f := range []*Follower{a, b} {
		if err := f.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Stop)
	}
	return store, feed, a, b
}

// cachedOn reports whether f answers tok from memory.
func cachedOn(t *testing.T, store *fakeStore, f *Follower, tok *stores.Token) bool {
	t.Helper()
	before := store.lookups.Load()
	_, err := f.LookupToken(ctx, stores.AccessToken, tok.Key)
	if err != nil {
		return false
	}
	return store.lookups.Load() == before
}

// waitGone waits until tok no longer validates on f, and returns how long.
func waitGone(t *testing.T, f *Follower, tok *stores.Token, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if _, err := f.LookupToken(ctx, stores.AccessToken, tok.Key); errors.Is(err, stores.ErrNotFound) {
			return time.Since(start)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("token still valid after %v", limit)
	return 0
}

func TestFollowerPropagatesRevocations(t *testing.T) {
	const interval = 50 * time.Millisecond
	store, _, a, b := twoGateways(t, interval)
	mk := func(family, subject string) *stores.Token {
		tok := token(stores.AccessToken, family, time.Hour)
		tok.Subject = subject
		_ = store.InsertTokens(ctx, tok)
		return tok
	}
	warm := func(tok *stores.Token) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for !cachedOn(t, store, b, tok) {
			if time.Now().After(deadline) {
				t.Fatal("the token never answered from b's cache")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, tc := range []struct {
		name   string
		revoke func(tok *stores.Token) error
	}{
		{"token", func(tok *stores.Token) error { return a.RevokeToken(ctx, stores.AccessToken, tok.Key) }},
		{"family", func(tok *stores.Token) error { return a.RevokeFamily(ctx, tok.Family, time.Now().Add(time.Hour)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := mk("fam-"+tc.name, "alice")
			warm(tok)
			if err := tc.revoke(tok); err != nil {
				t.Fatal(err)
			}
			if d := waitGone(t, b, tok, 10*interval); d > 2*interval+20*time.Millisecond {
				t.Errorf("revocation seen on the other gateway after %v, want within two intervals (%v)", d, 2*interval)
			}
		})
	}

	t.Run("subject", func(t *testing.T) {
		// The store has no RevokeSubject; publish as it would.
		tok := mk("fam-s", "bob")
		warm(tok)
		store.mu.Lock()
		delete(store.tokens, tok.Key)
		store.mu.Unlock()
		if err := a.publish(ctx, stores.Revocation{Kind: stores.RevokedSubject, Key: "bob"}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, b, tok, 10*interval)
	})
}

func TestFollowerDistrustsCacheWithoutFeed(t *testing.T) {
	const interval = 50 * time.Millisecond
	store, feed, _, b := twoGateways(t, interval)
	tok := token(stores.AccessToken, "f", time.Hour)
	_ = store.InsertTokens(ctx, tok)
	deadline := time.Now().Add(time.Second)
	for !cachedOn(t, store, b, tok) {
		if time.Now().After(deadline) {
			t.Fatal("never cached")
		}
		time.Sleep(5 * time.Millisecond)
	}
	feed.setFail(errors.New("feed down"))
	// Within two intervals the cache stops answering.
	time.Sleep(3 * interval)
	if cachedOn(t, store, b, tok) {
		t.Fatal("the cache answered while the feed was unreadable")
	}
	if s := b.FeedStats(); s.Failures == 0 || s.Flushes == 0 {
		t.Errorf("stats %+v: want failed reads and flushes", s)
	}
	feed.setFail(nil)
	time.Sleep(3 * interval)
	_, _ = b.LookupToken(ctx, stores.AccessToken, tok.Key)
	if !cachedOn(t, store, b, tok) {
		t.Error("the cache did not answer again once the feed was back")
	}
}

func TestFollowerRevocationFailsWhenUnpublished(t *testing.T) {
	store, feed, a, _ := twoGateways(t, time.Second)
	tok := token(stores.AccessToken, "f", time.Hour)
	_ = store.InsertTokens(ctx, tok)
	feed.setFail(errors.New("feed down"))
	err := a.RevokeToken(ctx, stores.AccessToken, tok.Key)
	if !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("RevokeToken with the feed down: %v, want ErrUnavailable (the caller retries)", err)
	}
}

func TestFollowerStopEndsGoroutine(t *testing.T) {
	f := NewFollower(New(newFake(), time.Minute, 10), &memFeed{}, time.Millisecond, nil)
	for i := 0; i < 3; i++ {
		if err := f.Start(ctx); err != nil {
			t.Fatal(err)
		}
		f.Stop()
	}
	f.Stop() // twice is fine
}

// BenchmarkHitFollowed is BenchmarkHit behind a Follower reading an idle
// feed: the hot path adds one atomic load.
func BenchmarkHitFollowed(b *testing.B) {
	f := newFake()
	fl := NewFollower(New(f, time.Hour, 1000), &memFeed{}, DefaultFeedInterval, nil)
	if err := fl.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer fl.Stop()
	at := token(stores.AccessToken, "f", time.Hour)
	_ = f.InsertTokens(ctx, at)
	for fl.FeedStats().Polls == 0 {
		time.Sleep(time.Millisecond)
	}
	_, _ = fl.LookupToken(ctx, stores.AccessToken, at.Key)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = fl.LookupToken(ctx, stores.AccessToken, at.Key)
		}
	})
}

// A ChangedClient event reaches OnClientChange and flushes nothing; after
// an outage of the feed the hook is told to reload every client.
func TestFollowerClientChange(t *testing.T) {
	const interval = 50 * time.Millisecond
	store, feed := newFake(), &memFeed{}
	changed := make(chan string, 16)
	b := NewFollower(New(store, time.Minute, 1000), feed, interval, nil)
	b.OnClientChange = func(id string) { changed <- id }
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	tok := token(stores.AccessToken, "f", time.Hour)
	_ = store.InsertTokens(ctx, tok)
	deadline := time.Now().Add(time.Second)
	for !cachedOn(t, store, b, tok) {
		if time.Now().After(deadline) {
			t.Fatal("never cached")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := feed.PublishRevocation(ctx, stores.Revocation{Kind: stores.ChangedClient, Key: "app-x"}); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-changed:
		if id != "app-x" {
			t.Fatalf("OnClientChange(%q), want app-x", id)
		}
	case <-time.After(20 * interval):
		t.Fatal("OnClientChange was not called")
	}
	time.Sleep(2 * interval)
	if !cachedOn(t, store, b, tok) || b.FeedStats().Flushes != 0 {
		t.Fatalf("a client change flushed the validation cache (stats %+v)", b.FeedStats())
	}
	select {
	case id := <-changed:
		t.Fatalf("OnClientChange(%q) called again for one event", id)
	default:
	}
	feed.setFail(errors.New("feed down"))
	time.Sleep(3 * interval)
	feed.setFail(nil)
	select {
	case id := <-changed:
		if id != "" {
			t.Fatalf("after an outage OnClientChange(%q), want \"\" (reload all)", id)
		}
	case <-time.After(20 * interval):
		t.Fatal("OnClientChange was not told to reload all after an outage")
	}
}

// A revoke by subject evicts the client_credentials tokens of a client of
// that id, as the stores revoke them (stores.RevokedBySubject).
func TestFollowerSubjectEvictsClientCredentials(t *testing.T) {
	const interval = 50 * time.Millisecond
	store, feed, _, b := twoGateways(t, interval)
	tok := token(stores.AccessToken, "", time.Hour)
	tok.Subject, tok.ClientID = "", "svc"
	_ = store.InsertTokens(ctx, tok)
	deadline := time.Now().Add(time.Second)
	for !cachedOn(t, store, b, tok) {
		if time.Now().After(deadline) {
			t.Fatal("never cached")
		}
		time.Sleep(5 * time.Millisecond)
	}
	store.mu.Lock()
	delete(store.tokens, tok.Key)
	store.mu.Unlock()
	if err := feed.PublishRevocation(ctx, stores.Revocation{Kind: stores.RevokedSubject, Key: "svc"}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, b, tok, 10*interval)
}
