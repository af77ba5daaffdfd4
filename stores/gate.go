package stores

import (
	"context"
	"time"
)

// Gate holds calls to a store until Open, so that no request reaches a
// backend before its Starter has checked or created the schema. Caddy starts
// its apps in no fixed order, so the HTTP server may take requests before the
// app that owns the store has started it. Once open, a call costs one
// channel check.
type Gate struct {
	s    Store
	open chan struct{}
}

// NewGate returns a closed gate in front of s.
func NewGate(s Store) *Gate { return &Gate{s: s, open: make(chan struct{})} }

// Open lets calls through. Calling it again does nothing.
func (g *Gate) Open() {
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

// wait returns when the gate is open, or with ErrUnavailable when ctx ends
// first.
func (g *Gate) wait(ctx context.Context) error {
	select {
	case <-g.open:
		return nil
	default:
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return Unavailable(ctx.Err())
	}
}

// InsertCode implements CodeStore.
func (g *Gate) InsertCode(ctx context.Context, c *Code) error {
	if err := g.wait(ctx); err != nil {
		return err
	}
	return g.s.InsertCode(ctx, c)
}

// ConsumeCode implements CodeStore.
func (g *Gate) ConsumeCode(ctx context.Context, key string) (*Code, error) {
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	return g.s.ConsumeCode(ctx, key)
}

// PurgeExpiredCodes implements CodeStore.
func (g *Gate) PurgeExpiredCodes(ctx context.Context, batch int) (int64, error) {
	if err := g.wait(ctx); err != nil {
		return 0, err
	}
	return g.s.PurgeExpiredCodes(ctx, batch)
}

// InsertTokens implements TokenStore.
func (g *Gate) InsertTokens(ctx context.Context, tokens ...*Token) error {
	if err := g.wait(ctx); err != nil {
		return err
	}
	return g.s.InsertTokens(ctx, tokens...)
}

// LookupToken implements TokenStore.
func (g *Gate) LookupToken(ctx context.Context, kind Kind, key string) (*Token, error) {
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	return g.s.LookupToken(ctx, kind, key)
}

// ConsumeRefreshToken implements TokenStore.
func (g *Gate) ConsumeRefreshToken(ctx context.Context, key string) (*Token, error) {
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	return g.s.ConsumeRefreshToken(ctx, key)
}

// RevokeToken implements TokenStore.
func (g *Gate) RevokeToken(ctx context.Context, kind Kind, key string) error {
	if err := g.wait(ctx); err != nil {
		return err
	}
	return g.s.RevokeToken(ctx, kind, key)
}

// RevokeFamily implements TokenStore.
func (g *Gate) RevokeFamily(ctx context.Context, family string, until time.Time) error {
	if err := g.wait(ctx); err != nil {
		return err
	}
	return g.s.RevokeFamily(ctx, family, until)
}

// PurgeExpiredTokens implements TokenStore.
func (g *Gate) PurgeExpiredTokens(ctx context.Context, batch int) (int64, error) {
	if err := g.wait(ctx); err != nil {
		return 0, err
	}
	return g.s.PurgeExpiredTokens(ctx, batch)
}

// RevokeSubject implements SubjectRevoker when the store behind the gate
// does, and answers ErrUnsupported otherwise.
func (g *Gate) RevokeSubject(ctx context.Context, subject, clientID string, until time.Time) (int64, error) {
	if err := g.wait(ctx); err != nil {
		return 0, err
	}
	sr, ok := g.s.(SubjectRevoker)
	if !ok {
		return 0, ErrUnsupported
	}
	return sr.RevokeSubject(ctx, subject, clientID, until)
}

// Interface guards
var (
	_ Store          = (*Gate)(nil)
	_ SubjectRevoker = (*Gate)(nil)
)
