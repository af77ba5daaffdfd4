package cassandra

import (
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// A value past its expires_at but not yet past its whole-second TTL is
// still a row: PutOnce replaces it (by a lightweight transaction on the
// old expiry) instead of reporting the key taken, and the TTL of the row
// follows the new value.
func TestPutOnceReplacesExpiredRow(t *testing.T) {
	e := newTestEngine(t, defaults(t), nil)
	ctx := testCtx(t, 30*time.Second)
	s, err := e.sess(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The TTL is the expiry rounded up to a whole second: an expiry just
	// past a second leaves the row almost a second after expires_at. A
	// loaded machine can still miss that window, so try a few times.
	var key string
	for attempt := 1; ; attempt++ {
		key = "jti:" + storetest.Key()
		exp := time.Now().Add(time.Second + 10*time.Millisecond)
		if err := e.PutOnce(ctx, key, []byte("old"), exp); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(exp) + 50*time.Millisecond)
		var n int
		err := s.Query("SELECT COUNT(*) FROM "+testKeyspace+".single_use WHERE key = ?", key).Scan(&n)
		if err == nil && n == 1 {
			break
		}
		if attempt == 3 {
			t.Fatalf("the expired row is gone already (%d, %v), three times: the test cannot reach the replace", n, err)
		}
	}
	if err := e.PutOnce(ctx, key, []byte("new"), time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("PutOnce over an expired row: %v", err)
	}
	if err := e.PutOnce(ctx, key, []byte("again"), time.Now().Add(time.Minute)); err != stores.ErrExists {
		t.Fatalf("PutOnce over the new value: %v, want ErrExists", err)
	}
	var ttlSecs int
	if err := s.Query("SELECT TTL(value) FROM "+testKeyspace+".single_use WHERE key = ?", key).Scan(&ttlSecs); err != nil || ttlSecs < 55 {
		t.Fatalf("TTL of the replaced value %d, %v; want about 60", ttlSecs, err)
	}
	if v, err := e.TakeOnce(ctx, key); err != nil || string(v) != "new" {
		t.Fatalf("TakeOnce = %q, %v; want the new value", v, err)
	}
	if err := s.Query("SELECT TTL(used) FROM "+testKeyspace+".single_use WHERE key = ?", key).Scan(&ttlSecs); err != nil || ttlSecs < 55 || ttlSecs > 60 {
		t.Fatalf("TTL of the taken flag %d, %v; want the value's", ttlSecs, err)
	}
}
