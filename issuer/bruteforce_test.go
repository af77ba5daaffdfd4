package issuer

// Item 6 of issue 8: failed client authentication is bounded in CPU and
// answered quickly once a client_id or an address keeps failing.

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const slowSecret = "slow-secret"

var (
	slowOnce sync.Once
	slowHash []byte
)

// withSlowClient registers "slow", whose secret hash has cost 10 (~50 ms a
// check), and takes the address from X-Test-IP.
func withSlowClient(t *testing.T) func(*Config) {
	slowOnce.Do(func() {
		var err error
		if slowHash, err = bcrypt.GenerateFromPassword([]byte(slowSecret), 10); err != nil {
			t.Fatal(err)
		}
	})
	return func(c *Config) {
		c.Clients["slow"] = &Client{SecretHash: slowHash, GrantTypes: []string{"client_credentials"}, Scopes: []string{"read"}}
		withTestIP(c)
	}
}

// withTestIP takes the address from X-Test-IP.
func withTestIP(c *Config) {
	c.ClientIP = func(r *http.Request) string {
		if ip := r.Header.Get("X-Test-IP"); ip != "" {
			return ip
		}
		return "192.0.2.1"
	}
}

// ccAs posts a client_credentials request with Basic credentials from ip.
func (e *env) ccAs(id, secret, ip string) result {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+TokenPath, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	if ip != "" {
		req.Header.Set("X-Test-IP", ip)
	}
	return e.do(req)
}

func wantThrottled(t *testing.T, res result, status int) {
	t.Helper()
	wantError(t, res, status, "temporarily_unavailable")
	if n, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After %q", res.header.Get("Retry-After"))
	}
}

// TestLockoutPerClient: a client_id that keeps failing is refused without a
// bcrypt check, even with the right secret, until its backoff ends; then the
// right secret works again.
func TestLockoutPerClient(t *testing.T) {
	e := newEnv(t, withSlowClient(t))
	if res := e.ccAs("slow", slowSecret, "198.51.100.1"); res.status != 200 {
		t.Fatalf("right secret: %d %s", res.status, res.body)
	}
	// Each attempt from its own address: only the client_id's count grows.
	for i := range lockoutFreeFailures {
		wantError(t, e.ccAs("slow", "wrong", "203.0.113."+strconv.Itoa(i)), 401, "invalid_client")
	}
	start := time.Now()
	for i := range 20 {
		wantThrottled(t, e.ccAs("slow", "wrong", "203.0.113.1"+strconv.Itoa(i)), http.StatusTooManyRequests)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("20 refusals took %v: they ran bcrypt", d)
	}
	// No oracle: the right secret, even memoized, is refused while locked.
	wantThrottled(t, e.ccAs("slow", slowSecret, "198.51.100.1"), http.StatusTooManyRequests)
	// Other clients are not affected.
	if res := e.ccAs("svc", svcSecret, "198.51.100.1"); res.status != 200 {
		t.Fatalf("another client during the lockout: %d", res.status)
	}
	// Within the documented bound after the failures stop, it works again.
	e.clock.Advance(lockoutMaxBackoff)
	if res := e.ccAs("slow", slowSecret, "198.51.100.1"); res.status != 200 {
		t.Fatalf("right secret after the backoff: %d %s", res.status, res.body)
	}
	// The backoff grows: one more failure locks for twice as long as before.
	wantError(t, e.ccAs("slow", "wrong", "203.0.113.99"), 401, "invalid_client")
	res := e.ccAs("slow", slowSecret, "198.51.100.1")
	wantThrottled(t, res, http.StatusTooManyRequests)
	if n, _ := strconv.Atoi(res.header.Get("Retry-After")); n < 2 {
		t.Errorf("Retry-After %d after the 7th failure, want the doubled backoff", n)
	}
}

// TestLockoutPerAddress: one address spraying client IDs is refused quickly
// after a few failures, for any client_id, known or not.
func TestLockoutPerAddress(t *testing.T) {
	e := newEnv(t, withTestIP)
	for i := range lockoutFreeFailuresAddress {
		wantError(t, e.ccAs("nobody"+strconv.Itoa(i), "x", "203.0.113.7"), 401, "invalid_client")
	}
	wantThrottled(t, e.ccAs("nobody-else", "x", "203.0.113.7"), http.StatusTooManyRequests)
	wantThrottled(t, e.ccAs("svc", svcSecret, "203.0.113.7"), http.StatusTooManyRequests)
	// IPv6 addresses count by /64.
	for i := range lockoutFreeFailuresAddress {
		wantError(t, e.ccAs("v6-"+strconv.Itoa(i), "x", "2001:db8:1:2::"+strconv.Itoa(i+1)), 401, "invalid_client")
	}
	wantThrottled(t, e.ccAs("v6-x", "x", "2001:db8:1:2:ffff::1"), http.StatusTooManyRequests)
	// Other addresses are not affected.
	if res := e.ccAs("svc", svcSecret, "198.51.100.2"); res.status != 200 {
		t.Fatalf("another address: %d", res.status)
	}
	e.clock.Advance(lockoutMaxBackoff)
	if res := e.ccAs("svc", svcSecret, "203.0.113.7"); res.status != 200 {
		t.Fatalf("after the backoff: %d", res.status)
	}
}

// TestSecretVerificationLimit: parallel wrong secrets from many addresses
// and client IDs never run more bcrypt checks at once than the limit; those
// that cannot get a slot in time are answered 503 with Retry-After.
func TestSecretVerificationLimit(t *testing.T) {
	var now, peak atomic.Int32
	orig := compareHash
	compareHash = func(h, p []byte) error {
		n := now.Add(1)
		for {
			m := peak.Load()
			if n <= m || peak.CompareAndSwap(m, n) {
				break
			}
		}
		defer now.Add(-1)
		return orig(h, p)
	}
	t.Cleanup(func() { compareHash = orig })
	e := newEnv(t, withSlowClient(t), func(c *Config) {
		c.MaxSecretVerifications = 1
		c.SecretVerificationWait = 120 * time.Millisecond
	})
	var wg sync.WaitGroup
	var busy, denied atomic.Int32
	start := time.Now()
	for i := range 16 {
		wg.Go(func() {
			// Distinct client IDs and addresses: no lockout applies.
			id := "slow"
			if i%2 == 1 {
				id = "nobody" + strconv.Itoa(i)
			}
			res := e.ccAs(id, "wrong"+strconv.Itoa(i), "203.0.113."+strconv.Itoa(i))
			switch res.status {
			case http.StatusServiceUnavailable:
				wantThrottled(t, res, http.StatusServiceUnavailable)
				busy.Add(1)
			case http.StatusUnauthorized:
				denied.Add(1)
			default:
				t.Errorf("status %d %s", res.status, res.body)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 1 {
		t.Errorf("%d bcrypt checks ran at once, limit 1", p)
	}
	if busy.Load() == 0 {
		t.Errorf("no request was refused for want of a slot (%d denied in %v)", denied.Load(), time.Since(start))
	}
	// The limit does not block the memo: a known client with the right
	// secret needs no bcrypt.
	if res := e.ccAs("svc", svcSecret, "198.51.100.200"); res.status != 200 {
		t.Fatalf("right secret: %d", res.status)
	}
}

// TestUnknownClientSleeps: failures for made-up client IDs take the time of
// a bcrypt check without running one, so a flood of them costs no CPU.
func TestUnknownClientSleeps(t *testing.T) {
	var calls atomic.Int32
	orig := compareHash
	compareHash = func(h, p []byte) error { calls.Add(1); return orig(h, p) }
	t.Cleanup(func() { compareHash = orig })
	e := newEnv(t, withSlowClient(t))
	start := time.Now()
	wantError(t, e.ccAs("slow", "wrong", "203.0.113.1"), 401, "invalid_client")
	known := time.Since(start)
	calls.Store(0)
	for i := range 4 {
		start = time.Now()
		wantError(t, e.ccAs("made-up"+strconv.Itoa(i), "x", "198.51.100."+strconv.Itoa(i)), 401, "invalid_client")
		if d := time.Since(start); d < known/3 {
			t.Errorf("an unknown client ID failed in %v, a known one in %v", d, known)
		}
	}
	if n := calls.Load(); n > 1 { // one calibration check at most
		t.Errorf("%d bcrypt checks for unknown client IDs", n)
	}
}
