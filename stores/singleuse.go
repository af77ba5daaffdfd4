package stores

import (
	"context"
	"time"
)

// MaxSingleUseValue is the size in bytes of the largest value a SingleUse
// store keeps; PutOnce refuses a larger one.
const MaxSingleUseValue = 16 << 10

// SingleUseWrapper is implemented by wrappers of a store (Gate, the app's
// metrics) that offer SingleUse exactly when the store they wrap does.
type SingleUseWrapper interface {
	SingleUse() (SingleUse, bool)
}

// SingleUseOf returns the single-use values of a store, wrapped or not
// (the app uses its code store's), and whether it keeps any.
func SingleUseOf(s any) (SingleUse, bool) {
	if w, ok := s.(SingleUseWrapper); ok {
		return w.SingleUse()
	}
	su, ok := s.(SingleUse)
	return su, ok
}

// SingleUse returns the single-use values of the store behind the gate,
// held like its other calls until the gate opens.
func (g *Gate) SingleUse() (SingleUse, bool) {
	su, ok := SingleUseOf(g.s)
	if !ok {
		return nil, false
	}
	return gatedOnce{g, su}, true
}

type gatedOnce struct {
	g  *Gate
	su SingleUse
}

func (o gatedOnce) PutOnce(ctx context.Context, key string, value []byte, expiresAt time.Time) error {
	if err := o.g.wait(ctx); err != nil {
		return err
	}
	return o.su.PutOnce(ctx, key, value, expiresAt)
}

func (o gatedOnce) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	if err := o.g.wait(ctx); err != nil {
		return nil, err
	}
	return o.su.TakeOnce(ctx, key)
}

func (o gatedOnce) PurgeExpiredOnce(ctx context.Context, batch int) (int64, error) {
	if err := o.g.wait(ctx); err != nil {
		return 0, err
	}
	return o.su.PurgeExpiredOnce(ctx, batch)
}

// Interface guards
var _ SingleUseWrapper = (*Gate)(nil)
