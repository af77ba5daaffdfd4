package purge

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tokengate/caddy-oauth2/stores"
)

// fakeStore counts purge calls. fail makes them fail; block makes them wait
// for their context.
type fakeStore struct {
	stores.Store // other methods are not called
	codeCalls    atomic.Int64
	tokenCalls   atomic.Int64
	fail         atomic.Bool
	block        atomic.Bool
	lastBatch    atomic.Int64
	entered      chan struct{}
	enteredOnce  sync.Once
}

func (f *fakeStore) purge(ctx context.Context, batch int, n int64) (int64, error) {
	f.lastBatch.Store(int64(batch))
	if f.entered != nil {
		f.enteredOnce.Do(func() { close(f.entered) })
	}
	if f.block.Load() {
		<-ctx.Done()
		return 0, stores.Unavailable(ctx.Err())
	}
	if f.fail.Load() {
		return 0, stores.Unavailable(errors.New("boom"))
	}
	return n, nil
}

func (f *fakeStore) PurgeExpiredCodes(ctx context.Context, batch int) (int64, error) {
	f.codeCalls.Add(1)
	return f.purge(ctx, batch, 3)
}

func (f *fakeStore) PurgeExpiredTokens(ctx context.Context, batch int) (int64, error) {
	f.tokenCalls.Add(1)
	return f.purge(ctx, batch, 5)
}

func TestRunOncePurgesBothTables(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := &fakeStore{}
	p := &Purger{Interval: time.Hour, Codes: s, Tokens: s, Logger: zap.New(core)}
	codes, tokens, err := p.RunOnce(context.Background())
	if err != nil || codes != 3 || tokens != 5 {
		t.Fatalf("RunOnce = %d, %d, %v; want 3, 5, nil", codes, tokens, err)
	}
	if s.codeCalls.Load() != 1 || s.tokenCalls.Load() != 1 {
		t.Fatalf("one store object as both: %d code purges, %d token purges; want 1 each", s.codeCalls.Load(), s.tokenCalls.Load())
	}
	if s.lastBatch.Load() != DefaultBatch {
		t.Fatalf("batch %d, want default %d", s.lastBatch.Load(), DefaultBatch)
	}
	entries := logs.FilterMessage("purged expired codes and tokens").All()
	if len(entries) != 1 {
		t.Fatalf("%d info lines, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	if f["codes_removed"] != int64(3) || f["tokens_removed"] != int64(5) || f["duration"] == nil {
		t.Fatalf("log fields %v", f)
	}
}

func TestRunOnceNilStores(t *testing.T) {
	s := &fakeStore{}
	p := &Purger{Interval: time.Hour, Tokens: s, Batch: 7}
	if c, tk, err := p.RunOnce(context.Background()); err != nil || c != 0 || tk != 5 {
		t.Fatalf("RunOnce = %d, %d, %v", c, tk, err)
	}
	if s.codeCalls.Load() != 0 || s.lastBatch.Load() != 7 {
		t.Fatalf("code purges %d, batch %d", s.codeCalls.Load(), s.lastBatch.Load())
	}
}

func TestRunOnceFailingCodesStillPurgesTokens(t *testing.T) {
	codes, toks := &fakeStore{}, &fakeStore{}
	codes.fail.Store(true)
	core, logs := observer.New(zapcore.InfoLevel)
	p := &Purger{Interval: time.Hour, Codes: codes, Tokens: toks, Logger: zap.New(core)}
	_, n, err := p.RunOnce(context.Background())
	if !errors.Is(err, stores.ErrUnavailable) || n != 5 {
		t.Fatalf("RunOnce = %d, %v; want tokens purged and the codes error", n, err)
	}
	if logs.FilterLevelExact(zapcore.ErrorLevel).Len() != 1 {
		t.Fatalf("want one error line, got %v", logs.All())
	}
}

// waitGoroutines waits for the goroutine count to come back to want.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	var n int
	for i := 0; i < 100; i++ {
		if n = runtime.NumGoroutine(); n <= want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d goroutines after Stop, want %d", n, want)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartStopLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	s := &fakeStore{}
	p := &Purger{Interval: 20 * time.Millisecond, Codes: s, Tokens: s}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	waitFor(t, "three runs", func() bool { return s.tokenCalls.Load() >= 3 })
	p.Stop()
	waitGoroutines(t, before)
	calls := s.tokenCalls.Load()
	time.Sleep(60 * time.Millisecond)
	if s.tokenCalls.Load() != calls {
		t.Fatal("purges ran after Stop")
	}
	p.Stop() // idempotent

	// And it can start again.
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a run after restart", func() bool { return s.tokenCalls.Load() > calls })
	p.Stop()
	waitGoroutines(t, before)
}

func TestStartNeedsInterval(t *testing.T) {
	if err := (&Purger{}).Start(); err == nil {
		t.Fatal("Start without Interval succeeded")
	}
}

func TestFailingStoreDoesNotStopLoop(t *testing.T) {
	s := &fakeStore{}
	s.fail.Store(true)
	core, logs := observer.New(zapcore.InfoLevel)
	p := &Purger{Interval: 20 * time.Millisecond, Codes: s, Tokens: s, Logger: zap.New(core)}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	waitFor(t, "failing runs", func() bool { return s.codeCalls.Load() >= 3 })
	s.fail.Store(false)
	waitFor(t, "a successful run after failures", func() bool {
		return logs.FilterMessage("purged expired codes and tokens").Len() > 0
	})
	if logs.FilterLevelExact(zapcore.ErrorLevel).Len() < 3 {
		t.Fatalf("want an error line per failed run, got %d", logs.FilterLevelExact(zapcore.ErrorLevel).Len())
	}
}

func TestStopInterruptsRun(t *testing.T) {
	before := runtime.NumGoroutine()
	s := &fakeStore{entered: make(chan struct{})}
	s.block.Store(true)
	core, logs := observer.New(zapcore.InfoLevel)
	p := &Purger{Interval: 20 * time.Millisecond, Timeout: time.Hour, Codes: s, Logger: zap.New(core)}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no run started")
	}
	start := time.Now()
	p.Stop()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Stop mid-run took %v", d)
	}
	waitGoroutines(t, before)
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
		t.Fatalf("a run interrupted by Stop logged %d errors", n)
	}
}

func TestTimeoutBoundsRun(t *testing.T) {
	s := &fakeStore{}
	s.block.Store(true)
	core, logs := observer.New(zapcore.InfoLevel)
	p := &Purger{Interval: 20 * time.Millisecond, Timeout: 30 * time.Millisecond, Codes: s, Logger: zap.New(core)}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	// Runs end at their deadline, fail, and the loop goes on.
	waitFor(t, "two timed-out runs", func() bool { return logs.FilterLevelExact(zapcore.ErrorLevel).Len() >= 2 })
}

// onceStore is a fakeStore that also keeps single-use values.
type onceStore struct {
	fakeStore
	onceCalls atomic.Int64
}

func (f *onceStore) PutOnce(context.Context, string, []byte, time.Time) error { return nil }
func (f *onceStore) TakeOnce(context.Context, string) ([]byte, error)         { return nil, nil }
func (f *onceStore) PurgeExpiredOnce(ctx context.Context, batch int) (int64, error) {
	f.onceCalls.Add(1)
	return f.purge(ctx, batch, 7)
}

func TestRunOncePurgesSingleUse(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := &onceStore{}
	var observed int64
	p := &Purger{Interval: time.Hour, Codes: s, Tokens: s, Once: s, Logger: zap.New(core),
		ObserveOnce: func(n int64) { observed += n }}
	if _, _, err := p.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.onceCalls.Load() != 1 || observed != 7 {
		t.Fatalf("%d single-use purges observing %d; want 1 and 7", s.onceCalls.Load(), observed)
	}
	f := logs.FilterMessage("purged expired codes and tokens").All()[0].ContextMap()
	if f["single_use_removed"] != int64(7) || f["codes_removed"] != int64(3) {
		t.Fatalf("log fields %v", f)
	}

	// A failing single-use purge is reported and keeps nothing else from
	// running.
	s.fail.Store(true)
	if _, _, err := p.RunOnce(context.Background()); !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("RunOnce with failing stores: %v, want ErrUnavailable", err)
	}
	if s.onceCalls.Load() != 2 || s.codeCalls.Load() != 2 || s.tokenCalls.Load() != 2 {
		t.Fatalf("calls: %d once, %d codes, %d tokens; want 2 each", s.onceCalls.Load(), s.codeCalls.Load(), s.tokenCalls.Load())
	}
}
