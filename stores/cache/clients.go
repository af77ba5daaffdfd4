package cache

import (
	"context"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// registry keeps the registered clients beside the cache, not in it: few
// records that must never be evicted. Like everything in this store they
// are lost when the process ends (not on a config reload).
type registry struct {
	clients map[string]*stores.RegisteredClient
}

// StartClients has nothing to check.
func (e *Engine) StartClients(ctx context.Context) error { return e.check(ctx) }

// CreateClient keeps a copy of c unless a live client has its ID.
func (e *Engine) CreateClient(ctx context.Context, c *stores.RegisteredClient) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	if err := c.Check(); err != nil {
		return err
	}
	e.clientsMu.Lock()
	defer e.clientsMu.Unlock()
	if old := e.reg.clients[c.ID]; old != nil && !old.Lapsed(time.Now()) {
		return stores.ErrExists
	}
	if e.reg.clients == nil {
		e.reg.clients = make(map[string]*stores.RegisteredClient)
	}
	e.reg.clients[c.ID] = c.Clone()
	return nil
}

// UpdateClient replaces a live client with a copy of c.
func (e *Engine) UpdateClient(ctx context.Context, c *stores.RegisteredClient) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	if err := c.Check(); err != nil {
		return err
	}
	e.clientsMu.Lock()
	defer e.clientsMu.Unlock()
	if old := e.reg.clients[c.ID]; old == nil || old.Lapsed(time.Now()) {
		return stores.ErrNotFound
	}
	e.reg.clients[c.ID] = c.Clone()
	return nil
}

// DeleteClient removes a live client.
func (e *Engine) DeleteClient(ctx context.Context, id string) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	e.clientsMu.Lock()
	defer e.clientsMu.Unlock()
	old := e.reg.clients[id]
	if old == nil {
		return stores.ErrNotFound
	}
	delete(e.reg.clients, id)
	if old.Lapsed(time.Now()) {
		return stores.ErrNotFound
	}
	return nil
}

// GetClient returns a copy of a live client.
func (e *Engine) GetClient(ctx context.Context, id string) (*stores.RegisteredClient, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	e.clientsMu.RLock()
	defer e.clientsMu.RUnlock()
	c := e.reg.clients[id]
	if c == nil || c.Lapsed(time.Now()) {
		return nil, stores.ErrNotFound
	}
	return c.Clone(), nil
}

// ListClients returns copies of the live clients.
func (e *Engine) ListClients(ctx context.Context) ([]*stores.RegisteredClient, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	now := time.Now()
	e.clientsMu.RLock()
	defer e.clientsMu.RUnlock()
	out := make([]*stores.RegisteredClient, 0, len(e.reg.clients))
	for _, c := range e.reg.clients {
		if !c.Lapsed(now) {
			out = append(out, c.Clone())
		}
	}
	return out, nil
}

// purgeClients drops the lapsed clients and returns how many.
func (e *Engine) purgeClients() int {
	now := time.Now()
	e.clientsMu.Lock()
	defer e.clientsMu.Unlock()
	n := 0
	for id, c := range e.reg.clients {
		if c.Lapsed(now) {
			delete(e.reg.clients, id)
			n++
		}
	}
	return n
}

var _ stores.ClientRegistry = (*Engine)(nil)
