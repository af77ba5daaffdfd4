package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/allegro/bigcache/v3"

	"github.com/tokengate/caddy-oauth2/stores"
)

// Single-use values (stores.SingleUse) are records like the others, under
// "o:"+key, so the overflow keeps them as it keeps consumed codes and
// revoked-family markers: bigcache never drops a live one to make room.
// While the overflow is over its budget, PutOnce is refused like an
// issuance (ErrUnavailable); TakeOnce only flips a flag and is not.

// PutOnce stores value under key until expiresAt unless a live value
// (used or not) is already there; see stores.SingleUse.
func (e *Engine) PutOnce(ctx context.Context, key string, value []byte, expiresAt time.Time) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	if key == "" {
		return errors.New("invalid single-use key")
	}
	if len(value) > stores.MaxSingleUseValue {
		return fmt.Errorf("single-use value of %d bytes exceeds %d", len(value), stores.MaxSingleUseValue)
	}
	now := time.Now().UnixMilli()
	v, err := encodeOnce(value, now, expiresAt.UnixMilli())
	if err != nil {
		return err
	}
	if err := e.admit(true); err != nil {
		return err
	}
	ikey := oncePrefix + key
	mu := e.keyLock(ikey)
	mu.Lock()
	defer mu.Unlock()
	old, err := e.get(ikey)
	if err != nil {
		return err
	}
	if _, exp, ok := header(old, recOnce); ok && exp > now {
		return stores.ErrExists
	}
	return e.set(ikey, v)
}

// TakeOnce marks a live value used and returns it; see stores.SingleUse.
func (e *Engine) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	ikey := oncePrefix + key
	mu := e.keyLock(ikey)
	mu.Lock()
	defer mu.Unlock()
	v, err := e.get(ikey)
	if err != nil {
		return nil, err
	}
	flags, exp, ok := header(v, recOnce)
	if !ok || exp <= time.Now().UnixMilli() {
		return nil, stores.ErrNotFound
	}
	if flags&flagUsed != 0 {
		return nil, stores.ErrConsumed
	}
	value, ok := onceValue(v)
	if !ok {
		return nil, stores.Unavailable(errors.New("corrupt single-use record"))
	}
	v[offFlags] |= flagUsed
	if err := e.set(ikey, v); err != nil {
		return nil, err
	}
	return value, nil
}

// PurgeExpiredOnce deletes expired single-use values, used or not, and
// returns how many.
func (e *Engine) PurgeExpiredOnce(ctx context.Context, batch int) (int64, error) {
	return e.purge(ctx, batch, purgeOnce)
}

// purgeOnce deletes an expired single-use value under its key lock: unlike
// a code, an expired key may be put again, and the new value must stay.
func (e *Engine) purgeOnce(ikey string, now int64) (bool, error) {
	mu := e.keyLock(ikey)
	mu.Lock()
	defer mu.Unlock()
	v, err := e.get(ikey)
	if err != nil {
		return false, err
	}
	if _, exp, ok := header(v, recOnce); !ok || exp > now {
		return false, nil
	}
	return true, e.del(ikey)
}

// purgeOnceOverflow drops an expired overflow copy of a single-use value,
// and reports whether that removed the value (bigcache holds no newer one).
func (e *Engine) purgeOnceOverflow(x overflowRef, now int64) bool {
	mu := e.keyLock(x.key)
	mu.Lock()
	defer mu.Unlock()
	v, gen, ok := e.over.get(x.key)
	if !ok || gen != x.gen || (len(v) >= headerLen && expiresAt(v) > now) {
		return false // put again or rescued again meanwhile
	}
	_, err := e.cache.Get(x.key)
	return e.over.remove(x.key, gen) && errors.Is(err, bigcache.ErrEntryNotFound)
}
