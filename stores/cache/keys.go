package cache

import (
	"context"
	"slices"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// signingKeys keeps the generated JWT signing keys beside the cache, not
// in it: a handful of records that must never be evicted.
type signingKeys struct {
	keys []stores.SigningKey
}

// StartKeys has nothing to check.
func (e *Engine) StartKeys(ctx context.Context) error { return e.check(ctx) }

// InsertSigningKey keeps a copy of k and drops the expired keys.
func (e *Engine) InsertSigningKey(ctx context.Context, k *stores.SigningKey) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	now := time.Now()
	e.keysMu.Lock()
	defer e.keysMu.Unlock()
	e.sk.keys = slices.DeleteFunc(e.sk.keys, func(s stores.SigningKey) bool { return !now.Before(s.ExpiresAt) })
	c := *k
	c.Sealed = slices.Clone(k.Sealed)
	e.sk.keys = append(e.sk.keys, c)
	return nil
}

// SigningKeys returns copies of the live keys.
func (e *Engine) SigningKeys(ctx context.Context) ([]*stores.SigningKey, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	now := time.Now()
	e.keysMu.Lock()
	defer e.keysMu.Unlock()
	out := make([]*stores.SigningKey, 0, len(e.sk.keys))
	for _, k := range e.sk.keys {
		if now.Before(k.ExpiresAt) {
			c := k
			c.Sealed = slices.Clone(k.Sealed)
			out = append(out, &c)
		}
	}
	return out, nil
}

var _ stores.KeyStore = (*Engine)(nil)
