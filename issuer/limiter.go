package issuer

import (
	"context"
	"hash/maphash"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/bcrypt"
)

// Failed client authentication is bounded in two ways.
//
// CPU: at most MaxSecretVerifications bcrypt checks run at once; a request
// that cannot start one within SecretVerificationWait is answered 503
// temporarily_unavailable with Retry-After, so a flood of wrong secrets
// cannot take every core from the guard and the other endpoints. Unknown
// client IDs take a slot too but sleep instead of computing (burnBcrypt).
//
// Guessing: failures are counted per presented client_id and per address
// (IPv6 by /64). From the lockoutFreeFailures-th failure for a client_id,
// or the lockoutFreeFailuresAddress-th for an address, each failure locks
// the key for a backoff that doubles from 1s up to lockoutMaxBackoff. A
// locked key is answered 429 temporarily_unavailable with Retry-After before
// any check, the memoized one included, even for the right secret:
// otherwise the answer would tell an attacker when a guess is right.
// Refusals do not extend the lock, so once failures stop, the right secret
// works again within lockoutMaxBackoff. Counts are forgotten
// lockoutForget after the last failure.
const (
	lockoutFreeFailures        = 5
	lockoutFreeFailuresAddress = 10
	lockoutBaseBackoff         = time.Second
	lockoutMaxBackoff          = 60 * time.Second
	lockoutForget              = 15 * time.Minute

	// DefaultSecretVerificationWait is the default of
	// Config.SecretVerificationWait.
	DefaultSecretVerificationWait = time.Second

	// lockoutShards × lockoutShardEntries bounds the failure table (about
	// 100 bytes an entry).
	lockoutShards       = 32
	lockoutShardEntries = 4096
)

// compareHash is bcrypt's check; tests wrap it.
var compareHash = bcrypt.CompareHashAndPassword

// AuthStats counts what the brute-force limits did since the Server was
// built, for metrics.
type AuthStats struct {
	// Verifications is the number of checks run (for unknown client IDs
	// these sleep instead, see burnBcrypt).
	Verifications uint64
	// Failures is the number of failed checks.
	Failures uint64
	// Lockouts is how often a client_id or address became locked.
	Lockouts uint64
	// LockedOut is the number of requests refused with 429 because their
	// client_id or address was locked.
	LockedOut uint64
	// Busy is the number of requests refused with 503 because no
	// verification slot came free in time.
	Busy uint64
}

// limiter holds the verification slots and the failure table.
type limiter struct {
	slots chan struct{}
	wait  time.Duration
	seed  maphash.Seed
	shard [lockoutShards]failureShard

	verifications, failures, lockouts, lockedOut, busy atomic.Uint64
	// checkNanos is a running average of a bcrypt check's duration, which
	// burnBcrypt sleeps.
	checkNanos atomic.Int64
}

// noteCheck folds one check's duration into the running average.
func (l *limiter) noteCheck(d time.Duration) {
	old := l.checkNanos.Load()
	if old == 0 {
		l.checkNanos.Store(int64(d))
		return
	}
	l.checkNanos.Store(old + (int64(d)-old)/8)
}

type failureShard struct {
	mu sync.Mutex
	m  map[string]*failureEntry
}

type failureEntry struct {
	fails int
	last  time.Time // last failure
	until time.Time // locked before this
}

func newLimiter(slots int, wait time.Duration) *limiter {
	if slots <= 0 {
		slots = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if wait <= 0 {
		wait = DefaultSecretVerificationWait
	}
	l := &limiter{slots: make(chan struct{}, slots), wait: wait, seed: maphash.MakeSeed()}
	for i := range l.shard {
		l.shard[i].m = make(map[string]*failureEntry)
	}
	return l
}

func (l *limiter) shardOf(key string) *failureShard {
	return &l.shard[maphash.String(l.seed, key)%lockoutShards]
}

// lockedFor returns how long key stays locked, 0 if it is not.
func (l *limiter) lockedFor(key string, now time.Time) time.Duration {
	sh := l.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[key]; e != nil && now.Before(e.until) {
		return e.until.Sub(now)
	}
	return 0
}

// fail counts a failure of key and returns the lock it started, if any.
func (l *limiter) fail(key string, free int, now time.Time) time.Duration {
	sh := l.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[key]
	if e == nil {
		if len(sh.m) >= lockoutShardEntries {
			sh.evict(now)
		}
		e = &failureEntry{}
		sh.m[key] = e
	} else if now.Sub(e.last) > lockoutForget {
		*e = failureEntry{}
	}
	e.fails++
	e.last = now
	if e.fails < free {
		return 0
	}
	backoff := lockoutMaxBackoff
	if n := e.fails - free; n < 16 {
		backoff = min(lockoutBaseBackoff<<n, lockoutMaxBackoff)
	}
	e.until = now.Add(backoff)
	return backoff
}

// evict makes room: forgotten entries go first, else the oldest of a few.
func (sh *failureShard) evict(now time.Time) {
	for k, e := range sh.m {
		if now.Sub(e.last) > lockoutForget {
			delete(sh.m, k)
		}
	}
	if len(sh.m) < lockoutShardEntries {
		return
	}
	var oldest string
	var at time.Time
	n := 0
	for k, e := range sh.m { // map order is random: a sample
		if n == 0 || e.last.Before(at) {
			oldest, at = k, e.last
		}
		if n++; n == 8 {
			break
		}
	}
	delete(sh.m, oldest)
}

// acquire takes a verification slot, waiting at most l.wait.
func (l *limiter) acquire(ctx context.Context) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (l *limiter) release() { <-l.slots }

// failureKeys are the table keys of a request's client_id and address.
func (s *Server) failureKeys(r *http.Request, id string) (idKey, addrKey string) {
	return "c\x00" + id, "a\x00" + addressKey(s.clientIP(r))
}

// remoteHost is the default Config.ClientIP.
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// addressKey groups IPv6 addresses by /64, which one host commonly holds.
func addressKey(ip string) string {
	a := net.ParseIP(ip)
	if a == nil || a.To4() != nil {
		return ip
	}
	return a.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// checkLockout refuses a request whose client_id or address is locked.
func (s *Server) checkLockout(w http.ResponseWriter, idKey, addrKey string) *oauthError {
	now := s.now()
	wait := max(s.limits.lockedFor(idKey, now), s.limits.lockedFor(addrKey, now))
	if wait == 0 {
		return nil
	}
	s.limits.lockedOut.Add(1)
	return throttled(w, http.StatusTooManyRequests, "too many failed client authentications, retry later", wait)
}

// recordFailure counts a failed check under both keys.
func (s *Server) recordFailure(id, idKey, addrKey string) {
	s.limits.failures.Add(1)
	now := s.now()
	for _, k := range []struct {
		key, kind string
		free      int
	}{{idKey, "client_id", lockoutFreeFailures}, {addrKey, "address", lockoutFreeFailuresAddress}} {
		d := s.limits.fail(k.key, k.free, now)
		if d == 0 {
			continue
		}
		s.limits.lockouts.Add(1)
		if ce := s.log.Check(zapcore.WarnLevel, "client authentication locked after repeated failures"); ce != nil {
			shown := id
			if len(shown) > 64 {
				shown = shown[:64]
			}
			ce.Write(zap.String("by", k.kind), zap.String("client_id", shown), zap.String("address", addrKey[2:]), zap.Duration("for", d))
		}
	}
}

// errBusy answers a request that found no verification slot.
func errBusy(w http.ResponseWriter) *oauthError {
	return throttled(w, http.StatusServiceUnavailable, "too many client authentications in progress, retry later", time.Second)
}

// throttled is a temporarily_unavailable error; Retry-After goes on w now,
// and writeError sends it with the error.
func throttled(w http.ResponseWriter, status int, desc string, wait time.Duration) *oauthError {
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	return &oauthError{Status: status, Code: errCodeTemporarilyUnavailable, Description: desc}
}

// AuthStats returns the brute-force limits' counters.
func (s *Server) AuthStats() AuthStats { return s.limits.stats() }

// Limits are the brute-force limits of client authentication: the
// verification slots and the failure table. Servers given the same Limits
// (Config.Limits) share them, so that every endpoint handler of one
// configuration counts the same failures against the same slots.
type Limits struct{ l *limiter }

// NewLimits returns limits allowing at most slots concurrent checks
// (default: half the CPUs, at least 1) and waiting at most wait for a slot
// (default: DefaultSecretVerificationWait).
func NewLimits(slots int, wait time.Duration) *Limits { return &Limits{newLimiter(slots, wait)} }

// Stats returns the limits' counters.
func (x *Limits) Stats() AuthStats { return x.l.stats() }

func (l *limiter) stats() AuthStats {
	return AuthStats{
		Verifications: l.verifications.Load(),
		Failures:      l.failures.Load(),
		Lockouts:      l.lockouts.Load(),
		LockedOut:     l.lockedOut.Load(),
		Busy:          l.busy.Load(),
	}
}
