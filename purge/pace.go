package purge

import (
	"slices"
	"time"
)

// Pacer defaults.
const (
	// DefaultGrowth is how many times the first batch a batch may grow to.
	DefaultGrowth = 100
	// DefaultSlowdown is how much slower than idle the store's lookups may
	// answer while a batch runs before the pacer backs off.
	DefaultSlowdown = 1.25
	// DefaultTargetBatch is how long a batch should take: batches grow
	// while shorter, so that a statement's locks and undo stay small.
	DefaultTargetBatch = 250 * time.Millisecond
	// DefaultMaxRest caps the rest after a batch.
	DefaultMaxRest = 2 * time.Second

	// startDuty is the share of the time spent deleting at first: rest as
	// long as the batch took.
	startDuty = 0.5
	minDuty   = 0.05
	maxDuty   = 0.9
	// dutyStep is the additive increase of the duty while lookups stay fast.
	dutyStep = 0.1
	// lookupFloor keeps a round trip's jitter on a busy host from counting
	// as a slowdown: lookups this much over the idle baseline are fast
	// enough.
	lookupFloor = 500 * time.Microsecond
	// idleWindow is how many recent idle lookups the baseline is the
	// median of.
	idleWindow = 5
)

// Pacer decides how many rows each purge batch deletes and how long the
// purge rests after it, from how long the batch took and how fast the store
// answered the guard's lookups while it ran, against the same lookups with
// no batch running. While lookups stay fast it raises the share of time
// spent deleting and doubles batches up to TargetBatch long; when they slow
// down it halves both (additive increase, multiplicative decrease, as TCP
// does). A backlog is worked off as fast as the store can spare, and no
// faster. A Pacer serves one purge run; it is not safe for concurrent use.
type Pacer struct {
	// MinBatch is the first and smallest batch. Default: DefaultBatch.
	MinBatch int
	// MaxBatch is the largest batch. Default: DefaultGrowth × MinBatch.
	MaxBatch int
	// Slowdown is the lookup latency during a batch, relative to idle,
	// above which the pacer backs off. Default: DefaultSlowdown.
	Slowdown float64
	// TargetBatch is how long a batch may take before batches shrink.
	// Default: DefaultTargetBatch.
	TargetBatch time.Duration
	// MaxRest caps the rest after a batch. Default: DefaultMaxRest.
	MaxRest time.Duration
	// MaxDuty caps the share of time spent deleting, for a store whose
	// lookups do not show what a batch costs. Default: 0.9.
	MaxDuty float64

	batch    int
	duty     float64
	idle     []time.Duration // the last idleWindow idle lookups
	baseline time.Duration   // their median
	started  bool
}

func (p *Pacer) init() {
	if p.started {
		return
	}
	p.started = true
	if p.MinBatch <= 0 {
		p.MinBatch = DefaultBatch
	}
	if p.MaxBatch <= 0 {
		p.MaxBatch = DefaultGrowth * p.MinBatch
	}
	p.MaxBatch = max(p.MaxBatch, p.MinBatch)
	if p.Slowdown <= 1 {
		p.Slowdown = DefaultSlowdown
	}
	if p.TargetBatch <= 0 {
		p.TargetBatch = DefaultTargetBatch
	}
	if p.MaxRest <= 0 {
		p.MaxRest = DefaultMaxRest
	}
	if p.MaxDuty <= 0 || p.MaxDuty > maxDuty {
		p.MaxDuty = maxDuty
	}
	p.batch, p.duty = p.MinBatch, min(startDuty, p.MaxDuty)
}

// Idle records a lookup's latency before the purge starts; the median of
// the last few is the baseline. Without one, every lookup counts as fast.
func (p *Pacer) Idle(lookup time.Duration) {
	p.init()
	if lookup <= 0 {
		return
	}
	if len(p.idle) == idleWindow {
		copy(p.idle, p.idle[1:])
		p.idle = p.idle[:idleWindow-1]
	}
	p.idle = append(p.idle, lookup)
	sorted := slices.Clone(p.idle)
	slices.Sort(sorted)
	p.baseline = sorted[len(sorted)/2]
}

// Batch is the size of the next batch.
func (p *Pacer) Batch() int {
	p.init()
	return p.batch
}

// Lagging backs off, halving the duty and the batch: lookups were still
// slow after the rest, as when the store works off a batch in the
// background (InnoDB purges deleted records after the commit).
func (p *Pacer) Lagging() {
	p.init()
	p.duty = max(p.duty/2, minDuty)
	p.batch = max(p.batch/2, p.MinBatch)
}

// Rest is the longest rest after a batch.
func (p *Pacer) Rest() time.Duration {
	p.init()
	return p.MaxRest
}

// Duty is the share of time the pacer currently spends deleting.
func (p *Pacer) Duty() float64 {
	p.init()
	return p.duty
}

// Fast reports whether a lookup of this latency, taken during a batch, is
// within Slowdown of idle.
func (p *Pacer) Fast(lookup time.Duration) bool {
	p.init()
	if p.baseline == 0 || lookup <= 0 {
		return true
	}
	return float64(lookup) <= float64(p.baseline)*p.Slowdown || lookup-p.baseline <= lookupFloor
}

// Next takes how long the last batch took and the store's lookup latency
// while it ran (0 if none was measured), and returns the rest before the
// next batch.
func (p *Pacer) Next(took, lookup time.Duration) time.Duration {
	p.init()
	if p.Fast(lookup) {
		p.duty = min(p.duty+dutyStep, p.MaxDuty)
		if took < p.TargetBatch/2 {
			p.batch = min(p.batch*2, p.MaxBatch)
		}
	} else {
		p.Lagging()
	}
	if took > 2*p.TargetBatch {
		p.batch = max(p.batch/2, p.MinBatch)
	}
	rest := time.Duration(float64(took) * (1 - p.duty) / p.duty)
	return min(rest, p.MaxRest)
}
