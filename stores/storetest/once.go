package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// maxOnceValue is the largest single-use value a store must keep
// (stores.SingleUse).
const maxOnceValue = 16 << 10

func singleUse(t *testing.T, s stores.Store) stores.SingleUse {
	t.Helper()
	su, ok := stores.SingleUseOf(s)
	if !ok {
		t.Skipf("%T does not implement stores.SingleUse", s)
	}
	return su
}

func onceValue(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if n > 0 {
		b[0] = 0 // binary, NUL included
	}
	return b
}

// testSingleUse: a value is stored once, taken once, and comes back
// byte for byte, up to 16 KiB; keys are independent.
func testSingleUse(t *testing.T, s stores.Store) {
	su := singleUse(t, s)
	exp := now().Add(time.Minute)
	for _, size := range []int{0, 1, 300, maxOnceValue} {
		key := "par:" + Key()
		val := onceValue(size)
		if err := su.PutOnce(ctx(t), key, val, exp); err != nil {
			t.Fatalf("PutOnce of %d bytes: %v", size, err)
		}
		wantErr(t, "PutOnce of a stored key", su.PutOnce(ctx(t), key, onceValue(8), exp), stores.ErrExists)
		got, err := su.TakeOnce(ctx(t), key)
		if err != nil {
			t.Fatalf("TakeOnce of %d bytes: %v", size, err)
		}
		if !bytes.Equal(got, val) {
			t.Fatalf("TakeOnce of %d bytes returned %d bytes, not the value stored", size, len(got))
		}
		_, err = su.TakeOnce(ctx(t), key)
		wantErr(t, "second TakeOnce", err, stores.ErrConsumed)
		// A used value is still there: storing it again is a replay.
		wantErr(t, "PutOnce of a used key", su.PutOnce(ctx(t), key, val, exp), stores.ErrExists)
		_, err = su.TakeOnce(ctx(t), key)
		wantErr(t, "TakeOnce after the refused PutOnce", err, stores.ErrConsumed)
	}

	// An assertion jti is only put: the second put is the replay.
	jti := "jti:" + Key()
	if err := su.PutOnce(ctx(t), jti, nil, exp); err != nil {
		t.Fatalf("PutOnce of a jti: %v", err)
	}
	wantErr(t, "replayed jti", su.PutOnce(ctx(t), jti, nil, exp), stores.ErrExists)

	_, err := su.TakeOnce(ctx(t), "par:"+Key())
	wantErr(t, "TakeOnce of an unknown key", err, stores.ErrNotFound)

	// Single-use keys live apart from codes: a code key is no value.
	c := newCode(time.Minute)
	if err := s.InsertCode(ctx(t), c); err != nil {
		t.Fatalf("InsertCode: %v", err)
	}
	_, err = su.TakeOnce(ctx(t), c.Key)
	wantErr(t, "TakeOnce of a code's key", err, stores.ErrNotFound)
	if err := su.PutOnce(ctx(t), c.Key, []byte("v"), exp); err != nil {
		t.Fatalf("PutOnce under a code's key: %v", err)
	}
	got, err := s.ConsumeCode(ctx(t), c.Key)
	if err != nil {
		t.Fatalf("ConsumeCode after PutOnce under its key: %v", err)
	}
	checkCode(t, got, c)
}

// testSingleUseRace: of concurrent takes exactly one gets the value, and
// of concurrent puts of one key exactly one succeeds.
func testSingleUseRace(t *testing.T, s stores.Store) {
	su := singleUse(t, s)
	const n = 16
	key := "par:" + Key()
	val := onceValue(2048)
	if err := su.PutOnce(ctx(t), key, val, now().Add(time.Minute)); err != nil {
		t.Fatalf("PutOnce: %v", err)
	}
	race := func(f func() error, loss error) (winners, losers int, other []error) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		start := make(chan struct{})
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				err := f()
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					winners++
				case errors.Is(err, loss):
					losers++
				default:
					other = append(other, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		return
	}
	w, l, other := race(func() error {
		got, err := su.TakeOnce(context.Background(), key)
		if err == nil && !bytes.Equal(got, val) {
			return errors.New("the winner got another value")
		}
		return err
	}, stores.ErrConsumed)
	if w != 1 || l != n-1 || len(other) > 0 {
		t.Fatalf("%d concurrent TakeOnce: %d winners, %d ErrConsumed, other errors %v; want exactly 1 winner", n, w, l, other)
	}

	jti := "jti:" + Key()
	w, l, other = race(func() error {
		return su.PutOnce(context.Background(), jti, []byte("x"), now().Add(time.Minute))
	}, stores.ErrExists)
	if w != 1 || l != n-1 || len(other) > 0 {
		t.Fatalf("%d concurrent PutOnce: %d succeeded, %d ErrExists, other errors %v; want exactly 1", n, w, l, other)
	}
}

// testSingleUseExpiry: an expired value is absent, its key may be put
// again, and PurgeExpiredOnce removes the expired values only.
func testSingleUseExpiry(t *testing.T, s stores.Store, opts Options) {
	su := singleUse(t, s)
	gone := "par:" + Key()
	if err := su.PutOnce(ctx(t), gone, []byte("old"), now().Add(-time.Second)); err != nil {
		t.Fatalf("PutOnce of an expired value: %v", err)
	}
	_, err := su.TakeOnce(ctx(t), gone)
	wantErr(t, "TakeOnce of an expired value", err, stores.ErrNotFound)

	short := "jti:" + Key()
	if err := su.PutOnce(ctx(t), short, []byte("first"), now().Add(1200*time.Millisecond)); err != nil {
		t.Fatalf("PutOnce: %v", err)
	}
	wantErr(t, "PutOnce while the value lives", su.PutOnce(ctx(t), short, []byte("second"), now().Add(time.Minute)), stores.ErrExists)
	taken := "par:" + Key()
	if err := su.PutOnce(ctx(t), taken, []byte("v"), now().Add(1200*time.Millisecond)); err != nil {
		t.Fatalf("PutOnce: %v", err)
	}
	if _, err := su.TakeOnce(ctx(t), taken); err != nil {
		t.Fatalf("TakeOnce: %v", err)
	}
	time.Sleep(2 * time.Second)
	_, err = su.TakeOnce(ctx(t), short)
	wantErr(t, "TakeOnce after the value's lifetime", err, stores.ErrNotFound)
	_, err = su.TakeOnce(ctx(t), taken)
	wantErr(t, "TakeOnce of a used value after its lifetime", err, stores.ErrNotFound)

	// Once expired, used or not, the key is free again.
	for _, key := range []string{short, taken} {
		if err := su.PutOnce(ctx(t), key, []byte("again"), now().Add(time.Minute)); err != nil {
			t.Fatalf("PutOnce of an expired key: %v", err)
		}
		got, err := su.TakeOnce(ctx(t), key)
		if err != nil || string(got) != "again" {
			t.Fatalf("TakeOnce of the value put again = %q, %v", got, err)
		}
	}

	const expired, batch = 120, 50
	for range expired {
		if err := su.PutOnce(ctx(t), "jti:"+Key(), []byte("x"), now().Add(-time.Minute)); err != nil {
			t.Fatalf("PutOnce: %v", err)
		}
	}
	live := "par:" + Key()
	if err := su.PutOnce(ctx(t), live, []byte("live"), now().Add(time.Hour)); err != nil {
		t.Fatalf("PutOnce: %v", err)
	}
	n, err := su.PurgeExpiredOnce(ctx(t), batch)
	if err != nil {
		t.Fatalf("PurgeExpiredOnce: %v", err)
	}
	// The expired ones of this test: the 120, and "gone" unless a put
	// replaced it.
	if opts.SelfExpiring {
		if n < 0 || n > expired+1 {
			t.Fatalf("PurgeExpiredOnce removed %d, want between 0 and %d", n, expired+1)
		}
	} else if n != expired+1 {
		t.Fatalf("PurgeExpiredOnce removed %d, want %d", n, expired+1)
	}
	if n, err := su.PurgeExpiredOnce(ctx(t), batch); err != nil || n != 0 {
		t.Fatalf("second PurgeExpiredOnce = %d, %v; want 0, nil", n, err)
	}
	if got, err := su.TakeOnce(ctx(t), live); err != nil || string(got) != "live" {
		t.Fatalf("purge removed a live value: %q, %v", got, err)
	}
}
