package purge

import (
	"testing"
	"time"
)

const ms = time.Millisecond

// An idle store: lookups as fast during batches as before them, batches
// short. Batches double to MaxBatch and the rest shrinks to a ninth of the
// batch.
func TestPacerGrowsOnIdleStore(t *testing.T) {
	p := &Pacer{MinBatch: 1000}
	p.Idle(300 * time.Microsecond)
	if p.Batch() != 1000 {
		t.Fatalf("first batch %d, want MinBatch", p.Batch())
	}
	var rest time.Duration
	for range 20 {
		rest = p.Next(20*ms, 310*time.Microsecond)
	}
	if p.Batch() != 1000*DefaultGrowth {
		t.Fatalf("batch %d after 20 fast batches, want MaxBatch %d", p.Batch(), 1000*DefaultGrowth)
	}
	if want := 20 * ms / 9; rest < want-time.Microsecond || rest > want+time.Microsecond {
		t.Fatalf("rest %v after a 20ms batch at full duty, want %v", rest, want)
	}
}

// Lookups slower than Slowdown × idle during a batch: the pacer backs off
// to its smallest batch and longest rest.
func TestPacerBacksOffWhenLookupsSlow(t *testing.T) {
	p := &Pacer{MinBatch: 1000, MaxBatch: 64000}
	p.Idle(ms)
	for range 6 {
		p.Next(10*ms, ms)
	}
	if p.Batch() != 64000 {
		t.Fatalf("batch %d, want 64000 before the slowdown", p.Batch())
	}
	first := p.Next(100*ms, 3*ms)
	if p.Batch() != 32000 {
		t.Fatalf("batch %d after one slow batch, want halved to 32000", p.Batch())
	}
	if first <= 100*ms/9 {
		t.Fatalf("rest %v after a slow batch, want longer than at full duty", first)
	}
	var rest time.Duration
	for range 10 {
		rest = p.Next(100*ms, 3*ms)
	}
	if p.Batch() != 1000 {
		t.Fatalf("batch %d after slow batches, want MinBatch", p.Batch())
	}
	// Duty 5%: 100ms of work, 1.9s of rest.
	if want := 1900 * ms; rest < want-ms || rest > want+ms {
		t.Fatalf("rest %v at the lowest duty, want %v", rest, want)
	}
	if rest := p.Next(time.Second, 3*ms); rest != DefaultMaxRest {
		t.Fatalf("rest %v after a 1s batch at the lowest duty, want the cap %v", rest, DefaultMaxRest)
	}
	// Fast lookups again: the duty climbs back additively.
	before := p.Duty()
	p.Next(10*ms, ms)
	if d := p.Duty(); d <= before || d > before+dutyStep+1e-9 {
		t.Fatalf("duty %v -> %v after a fast batch, want one step up", before, d)
	}
}

// A batch longer than twice the target halves the next one even when the
// lookups stayed fast: a statement's locks and undo stay bounded.
func TestPacerShrinksLongBatches(t *testing.T) {
	p := &Pacer{MinBatch: 1000}
	p.Idle(ms)
	for range 5 {
		p.Next(10*ms, ms)
	}
	if p.Batch() != 32000 {
		t.Fatalf("batch %d, want 32000", p.Batch())
	}
	p.Next(time.Second, ms)
	if p.Batch() != 16000 {
		t.Fatalf("batch %d after a 1s batch, want 16000", p.Batch())
	}
	// Between half the target and twice it, the size holds.
	p.Next(DefaultTargetBatch, ms)
	if p.Batch() != 16000 {
		t.Fatalf("batch %d after a batch on target, want it unchanged", p.Batch())
	}
}

// A round trip on a busy host jitters by a fraction of a millisecond; that
// is no slowdown, however small the baseline.
func TestPacerIgnoresJitter(t *testing.T) {
	p := &Pacer{}
	p.Idle(100 * time.Microsecond)
	if !p.Fast(550 * time.Microsecond) {
		t.Fatal("450µs over a 100µs baseline counted as slow")
	}
	if p.Fast(2 * ms) {
		t.Fatal("2ms against a 100µs baseline counted as fast")
	}
	// No baseline, or no lookup during the batch: nothing to go by.
	if !(&Pacer{}).Fast(time.Second) || !p.Fast(0) {
		t.Fatal("a lookup with nothing to compare counted as slow")
	}
}

// A fixed batch (MinBatch = MaxBatch) never changes, and the first rest is
// the batch's own time, as before pacing adapted.
func TestPacerFixedBatch(t *testing.T) {
	p := &Pacer{MinBatch: 500, MaxBatch: 500}
	if p.Batch() != 500 || p.Duty() != startDuty {
		t.Fatalf("batch %d duty %v", p.Batch(), p.Duty())
	}
	for range 10 {
		p.Next(ms, 0)
	}
	if p.Batch() != 500 {
		t.Fatalf("fixed batch became %d", p.Batch())
	}
}

// The baseline is the median of the last few idle lookups: one outlier does
// not move it.
func TestPacerBaselineFollowsLoad(t *testing.T) {
	p := &Pacer{}
	for _, d := range []time.Duration{ms, ms, 50 * ms, ms} {
		p.Idle(d)
	}
	if p.Fast(10 * ms) {
		t.Fatal("10ms counted as fast against idle lookups of 1ms and one outlier")
	}
	// The store got busier for reasons of its own: 10ms is its idle now.
	for range idleWindow {
		p.Idle(10 * ms)
	}
	if !p.Fast(11 * ms) {
		t.Fatal("11ms counted as slow once idle lookups take 10ms")
	}
	if p.Fast(20 * ms) {
		t.Fatal("twice the idle latency counted as fast")
	}
}

// Lookups still slow after the rest: the store is working off the batch in
// the background, so the pacer backs off as after a slow batch.
func TestPacerLagging(t *testing.T) {
	p := &Pacer{MinBatch: 1000}
	p.Idle(ms)
	for range 3 {
		p.Next(10*ms, ms)
	}
	batch, duty := p.Batch(), p.Duty()
	p.Lagging()
	if p.Batch() != batch/2 || p.Duty() != duty/2 {
		t.Fatalf("after Lagging: batch %d duty %v, want %d and %v", p.Batch(), p.Duty(), batch/2, duty/2)
	}
	if p.Rest() != DefaultMaxRest {
		t.Fatalf("Rest %v, want %v", p.Rest(), DefaultMaxRest)
	}
}

// MaxDuty caps the duty cycle however fast the lookups stay.
func TestPacerMaxDuty(t *testing.T) {
	p := &Pacer{MinBatch: 1000, MaxDuty: 0.5}
	p.Idle(ms)
	var rest time.Duration
	for range 10 {
		rest = p.Next(100*ms, ms)
	}
	if p.Duty() != 0.5 || rest != 100*ms {
		t.Fatalf("duty %v rest %v after fast batches with MaxDuty 0.5, want 0.5 and the batch's time", p.Duty(), rest)
	}
}
