package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/stores"
)

// Registry defaults.
const (
	// DefaultMaxRegisteredClients bounds the clients a Registry keeps in
	// memory.
	DefaultMaxRegisteredClients = 100_000
	// DefaultClientFeedInterval is how often a Registry reads the feed for
	// clients changed through other gateways.
	DefaultClientFeedInterval = 250 * time.Millisecond
	// DefaultClientResync is how often a Registry reloads every client, in
	// case a feed event was missed.
	DefaultClientResync = 5 * time.Minute
	// clientFeedOverlap re-reads this much of the feed before the previous
	// read (late commits, clock skew); events are applied once, by ID.
	clientFeedOverlap = 2 * time.Second
)

// ErrConfiguredClient refuses a change to a client of the configuration:
// those change only with the configuration.
var ErrConfiguredClient = errors.New("the client is defined in the configuration, which alone can change it")

// ErrTooManyClients refuses a client beyond the Registry's bound.
var ErrTooManyClients = errors.New("too many registered clients")

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	// Store keeps the clients. Required.
	Store stores.ClientRegistry
	// Feed, when set, carries ChangedClient events between the gateways
	// sharing Store: the Registry publishes every change it makes and reads
	// the others' every FeedInterval (unless Follow is set). Default: nil,
	// one gateway alone (the cache store).
	Feed stores.RevocationFeed
	// FeedInterval is how often the feed is read. Default: 250ms.
	FeedInterval time.Duration
	// Followed, when set, means something else reads the feed and calls
	// Changed for every ChangedClient event (the validation cache's
	// follower), so the Registry does not read it too. Default: false.
	Followed bool
	// Resync is how often every client is reloaded from the store as a
	// safety net against a lost event. Default: 5m.
	Resync time.Duration
	// Configured are the clients of the configuration, whose IDs cannot be
	// registered. Default: none.
	Configured map[string]*Client
	// MaxClients bounds the clients kept in memory; creating one beyond
	// it fails with ErrTooManyClients. Default: 100,000.
	MaxClients int
	// Revoke revokes every code and token of a deleted client on every
	// gateway. Default: nothing is revoked (the guard and the endpoints
	// still refuse the tokens of a client that is gone).
	Revoke func(ctx context.Context, clientID string) error
	// Observer is told of every change, for metrics. Default: none.
	Observer ClientObserver
	// Logger receives structured logs, never a secret. Default: none.
	Logger *zap.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Registry is the in-memory view of the clients registered at runtime in a
// stores.ClientRegistry, shared by every Server of a configuration and by
// the guard's registration check. Nothing on a request's path reads the
// store: the Registry loads every client at Start, reloads one client on
// each ChangedClient feed event, and reloads all of them every Resync.
type Registry struct {
	store      stores.ClientRegistry
	feed       stores.RevocationFeed
	interval   time.Duration
	followed   bool
	resync     time.Duration
	configured map[string]bool
	max        int
	revoke     func(ctx context.Context, clientID string) error
	obs        ClientObserver
	log        *zap.Logger
	now        func() time.Time

	mu      sync.RWMutex
	clients map[string]*client
	// loaded is set once every client was loaded; until then the loop
	// retries every second.
	loaded atomic.Bool

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRegistry returns a Registry; Start loads it.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	if cfg.Store == nil {
		return nil, errors.New("issuer: registry: a store is required")
	}
	g := &Registry{
		store:      cfg.Store,
		feed:       cfg.Feed,
		interval:   orDefault(cfg.FeedInterval, DefaultClientFeedInterval),
		followed:   cfg.Followed,
		resync:     orDefault(cfg.Resync, DefaultClientResync),
		configured: make(map[string]bool, len(cfg.Configured)),
		max:        orDefault(cfg.MaxClients, DefaultMaxRegisteredClients),
		revoke:     cfg.Revoke,
		obs:        cfg.Observer,
		log:        cfg.Logger,
		now:        cfg.Now,
		clients:    map[string]*client{},
	}
	for id := range cfg.Configured {
		g.configured[id] = true
	}
	if g.log == nil {
		g.log = zap.NewNop()
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g, nil
}

// Start checks the store, loads every client and starts following
// changes. An unreachable store is logged and retried at every resync;
// a misconfigured one is an error.
func (g *Registry) Start(ctx context.Context) error {
	g.runMu.Lock()
	defer g.runMu.Unlock()
	if g.cancel != nil {
		return errors.New("issuer: registry already started")
	}
	if g.feed != nil && !g.followed {
		if err := g.feed.StartFeed(ctx); err != nil && !errors.Is(err, stores.ErrUnavailable) {
			return err
		}
	}
	if err := g.store.StartClients(ctx); err != nil {
		if !errors.Is(err, stores.ErrUnavailable) {
			return err
		}
		g.log.Error("client registry unreachable at start; registered clients are unknown until it answers", zap.Error(err))
	} else if err := g.reloadAll(ctx); err != nil {
		g.log.Error("loading the registered clients", zap.Error(err))
	}
	lctx, cancel := context.WithCancel(context.Background())
	g.cancel, g.done = cancel, make(chan struct{})
	go g.loop(lctx, g.done)
	return nil
}

// Stop ends the Registry's goroutine and waits for it.
func (g *Registry) Stop() {
	g.runMu.Lock()
	cancel, done := g.cancel, g.done
	g.cancel, g.done = nil, nil
	g.runMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (g *Registry) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	resync := time.NewTicker(g.resync)
	defer resync.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	var poll <-chan time.Time
	if g.feed != nil && !g.followed {
		t := time.NewTicker(g.interval)
		defer t.Stop()
		poll = t.C
	}
	var (
		since = g.now()
		seen  = map[string]time.Time{}
		fails int
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
			if g.loaded.Load() {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := g.reloadAll(rctx); err == nil {
				g.log.Info("registered clients loaded")
			}
			cancel()
		case <-resync.C:
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			if err := g.reloadAll(rctx); err != nil && ctx.Err() == nil {
				g.log.Error("reloading the registered clients", zap.Error(err))
			}
			cancel()
		case <-poll:
			start := g.now()
			rctx, cancel := context.WithTimeout(ctx, max(g.interval, time.Second))
			evs, err := g.feed.RevocationsSince(rctx, since.Add(-clientFeedOverlap))
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if fails++; fails == 1 {
					g.log.Error("revocation feed unreadable: changes to registered clients through other gateways wait for it", zap.Error(err))
				}
				continue
			}
			if fails > 0 {
				// Events may be lost for good after a long outage.
				g.log.Warn("revocation feed readable again: reloading the registered clients", zap.Int("failed_reads", fails))
				fails = 0
				if err := g.reloadAll(ctx); err != nil {
					g.log.Error("reloading the registered clients", zap.Error(err))
				}
			}
			for _, ev := range evs {
				if ev.Kind != stores.ChangedClient {
					continue
				}
				if _, dup := seen[ev.ID]; dup {
					continue
				}
				seen[ev.ID] = ev.At
				g.Changed(ev.Key)
			}
			for id, at := range seen {
				if at.Before(start.Add(-4 * clientFeedOverlap)) {
					delete(seen, id)
				}
			}
			since = start
		}
	}
}

// Changed reloads one client from the store, after a ChangedClient event.
func (g *Registry) Changed(id string) {
	if g.configured[id] {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc, err := g.store.GetClient(ctx, id)
	switch {
	case errors.Is(err, stores.ErrNotFound):
		g.remove(id)
	case err != nil:
		g.log.Error("reloading a changed client; the next resync retries", zap.String("client_id", id), zap.Error(err))
	default:
		g.put(rc)
	}
}

// reloadAll replaces the in-memory clients with the store's.
func (g *Registry) reloadAll(ctx context.Context) error {
	list, err := g.store.ListClients(ctx)
	if err != nil {
		return err
	}
	defer g.loaded.Store(true)
	next := make(map[string]*client, len(list))
	g.mu.RLock()
	for _, rc := range list {
		if len(next) >= g.max {
			g.log.Error("more registered clients than the registry keeps in memory; the rest are unknown",
				zap.Int("max", g.max), zap.Int("stored", len(list)))
			break
		}
		if old := g.clients[rc.ID]; old != nil && sameRecord(old.rec, rc) {
			next[rc.ID] = old // keeps its secret memo
		} else if c := g.build(rc); c != nil {
			next[rc.ID] = c
		}
	}
	g.mu.RUnlock()
	g.mu.Lock()
	g.clients = next
	g.mu.Unlock()
	return nil
}

func sameRecord(a, b *stores.RegisteredClient) bool {
	return a.UpdatedAt.Equal(b.UpdatedAt) && string(a.SecretHash) == string(b.SecretHash) &&
		string(a.PreviousSecretHash) == string(b.PreviousSecretHash) && a.ExpiresAt.Equal(b.ExpiresAt) &&
		a.RegistrationTokenKey == b.RegistrationTokenKey
}

// build validates a stored client; one that no longer passes (a rule
// tightened since it was stored) is logged and left out.
func (g *Registry) build(rc *stores.RegisteredClient) *client {
	if g.configured[rc.ID] {
		g.log.Warn("a registered client has the ID of a configured client; the configured one wins", zap.String("client_id", rc.ID))
		return nil
	}
	c, err := clientOf(rc)
	if err != nil {
		g.log.Error("ignoring an invalid registered client", zap.String("client_id", rc.ID), zap.Error(err))
		return nil
	}
	return c
}

// clientOf validates a stored client as newClient does a configured one.
func clientOf(rc *stores.RegisteredClient) (*client, error) {
	// RFC 7591 §2 members the record keeps in its metadata: how the client
	// authenticates, its keys and whether it must push its requests.
	var extra struct {
		AuthMethod string          `json:"token_endpoint_auth_method"`
		JWKSURI    string          `json:"jwks_uri"`
		JWKS       json.RawMessage `json:"jwks"`
		RequirePAR bool            `json:"require_pushed_authorization_requests"`
		// RFC 9449 §5.2 and OpenID Connect Registration §2.
		DPoPBound  bool   `json:"dpop_bound_access_tokens"`
		IDTokenAlg string `json:"id_token_signed_response_alg"`
	}
	if len(rc.Metadata) > 0 {
		if err := json.Unmarshal(rc.Metadata, &extra); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field != "" {
				return nil, badField(te.Field, fmt.Errorf("%s has the wrong type", te.Field))
			}
			return nil, badField("", errors.New("the stored metadata is malformed"))
		}
	}
	if extra.AuthMethod != AuthMethodPrivateKeyJWT {
		// A secret's method is by the secret; the keys belong to
		// private_key_jwt only.
		extra.AuthMethod, extra.JWKSURI, extra.JWKS = "", "", nil
	}
	if string(extra.JWKS) == "null" {
		extra.JWKS = nil
	}
	c, err := newClient(rc.ID, &Client{
		AuthMethod:   extra.AuthMethod,
		JWKSURI:      extra.JWKSURI,
		JWKS:         extra.JWKS,
		RequirePAR:   extra.RequirePAR,
		ID:           rc.ID,
		SecretHash:   rc.SecretHash,
		RedirectURIs: rc.RedirectURIs,
		GrantTypes:   rc.GrantTypes,
		Scopes:       rc.Scopes,
		SkipConsent:  rc.SkipConsent && rc.RegisteredBy != stores.RegisteredDynamically,
		Introspect:   rc.Introspect,
		Name:         rc.Name,
		LogoURI:      rc.LogoURI,
		Resources:    rc.Resources,

		PostLogoutRedirectURIs:   postLogoutURIsOf(rc),
		DPoPBoundAccessTokens:    extra.DPoPBound,
		IDTokenSignedResponseAlg: extra.IDTokenAlg,
	})
	if err != nil {
		return nil, err
	}
	c.rec = cloneRecord(rc)
	c.prevHash = slices.Clone(rc.PreviousSecretHash)
	c.prevUntil = rc.PreviousSecretExpiresAt
	c.expires = rc.ExpiresAt
	return c, nil
}

// postLogoutURIsOf reads a record's post_logout_redirect_uris from its
// metadata, where ClientMetadata keeps them.
func postLogoutURIsOf(rc *stores.RegisteredClient) []string {
	var m struct {
		URIs []string `json:"post_logout_redirect_uris"`
	}
	_ = json.Unmarshal(rc.Metadata, &m) // a record without metadata has none
	return m.URIs
}

func cloneRecord(rc *stores.RegisteredClient) *stores.RegisteredClient { return rc.Clone() }

func (g *Registry) put(rc *stores.RegisteredClient) {
	c := g.build(rc)
	if c == nil {
		g.remove(rc.ID)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.clients[rc.ID]
	if old != nil && sameRecord(old.rec, rc) {
		return
	}
	if old == nil && len(g.clients) >= g.max {
		g.log.Error("more registered clients than the registry keeps in memory; this one is unknown",
			zap.Int("max", g.max), zap.String("client_id", rc.ID))
		return
	}
	g.clients[rc.ID] = c
}

func (g *Registry) remove(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.clients, id)
}

// lookup returns a live registered client, nil for none. It is on every
// token request's path: one read-locked map lookup.
func (g *Registry) lookup(id string) *client {
	g.mu.RLock()
	c := g.clients[id]
	g.mu.RUnlock()
	if c == nil || !c.expires.IsZero() && !g.now().Before(c.expires) {
		return nil
	}
	return c
}

// Scopes returns the scopes a live registered client may be granted, and
// whether it is registered, for the guard's registration check.
func (g *Registry) Scopes(id string) (map[string]bool, bool) {
	c := g.lookup(id)
	if c == nil {
		return nil, false
	}
	return c.scopes, true
}

// Get returns a copy of a live registered client's record.
func (g *Registry) Get(id string) (*stores.RegisteredClient, bool) {
	c := g.lookup(id)
	if c == nil {
		return nil, false
	}
	return cloneRecord(c.rec), true
}

// List returns copies of every live registered client, by ID.
func (g *Registry) List() []*stores.RegisteredClient {
	now := g.now()
	g.mu.RLock()
	list := make([]*stores.RegisteredClient, 0, len(g.clients))
	for _, c := range g.clients {
		if c.expires.IsZero() || now.Before(c.expires) {
			list = append(list, cloneRecord(c.rec))
		}
	}
	g.mu.RUnlock()
	slices.SortFunc(list, func(a, b *stores.RegisteredClient) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return list
}

// Dynamic returns how many live clients registered themselves.
func (g *Registry) Dynamic() int {
	now := g.now()
	g.mu.RLock()
	defer g.mu.RUnlock()
	n := 0
	for _, c := range g.clients {
		if c.dynamic() && (c.expires.IsZero() || now.Before(c.expires)) {
			n++
		}
	}
	return n
}

// Configured reports whether id is a client of the configuration.
func (g *Registry) Configured(id string) bool { return g.configured[id] }

// Validate checks a client before it is stored, with the rules and
// messages of a configured client; the error is a *MetadataError.
func (g *Registry) Validate(rc *stores.RegisteredClient) error {
	if err := rc.Check(); err != nil {
		return badField("", err) // what no store keeps
	}
	if _, err := clientOf(rc); err != nil {
		var me *MetadataError
		if errors.As(err, &me) {
			return me
		}
		return badField("client_id", err)
	}
	return nil
}

// Create validates and stores a new client and tells the other gateways.
// An ID of the configuration or already registered gives stores.ErrExists;
// nothing is stored when anything fails.
func (g *Registry) Create(ctx context.Context, rc *stores.RegisteredClient) error {
	if g.configured[rc.ID] {
		return stores.ErrExists
	}
	if err := g.Validate(rc); err != nil {
		return err
	}
	g.mu.RLock()
	full := len(g.clients) >= g.max
	g.mu.RUnlock()
	if full {
		return ErrTooManyClients
	}
	if err := g.store.CreateClient(ctx, rc); err != nil {
		return err
	}
	g.put(rc)
	g.publish(ctx, rc.ID)
	g.observe("created", rc.RegisteredBy)
	return nil
}

func (g *Registry) observe(op, by string) {
	if g.obs != nil {
		g.obs.ClientChanged(op, by)
	}
}

// Update validates and replaces a registered client and tells the other
// gateways. A configured client gives ErrConfiguredClient, an absent one
// stores.ErrNotFound.
func (g *Registry) Update(ctx context.Context, rc *stores.RegisteredClient) error {
	if g.configured[rc.ID] {
		return ErrConfiguredClient
	}
	if err := g.Validate(rc); err != nil {
		return err
	}
	if err := g.store.UpdateClient(ctx, rc); err != nil {
		return err
	}
	g.put(rc)
	g.publish(ctx, rc.ID)
	g.observe("updated", rc.RegisteredBy)
	return nil
}

// Extend moves a registered client's lapse to until. It reads the
// client from the store first and changes nothing else, so that it does
// not undo a change (a rotated secret) made elsewhere meanwhile.
func (g *Registry) Extend(ctx context.Context, id string, until time.Time) error {
	rc, err := g.store.GetClient(ctx, id)
	if err != nil {
		return err
	}
	if rc.ExpiresAt.IsZero() || !rc.ExpiresAt.Before(until) {
		return nil
	}
	rc.ExpiresAt = until
	if err := g.store.UpdateClient(ctx, rc); err != nil {
		return err
	}
	g.put(rc)
	g.publish(ctx, id)
	return nil
}

// Delete removes a registered client, tells the other gateways, and
// revokes every code and token of the client.
func (g *Registry) Delete(ctx context.Context, id string) error {
	if g.configured[id] {
		return ErrConfiguredClient
	}
	by := stores.RegisteredByAdmin
	if c := g.lookup(id); c != nil {
		by = c.rec.RegisteredBy
	}
	if err := g.store.DeleteClient(ctx, id); err != nil {
		return err
	}
	g.remove(id)
	g.publish(ctx, id)
	g.observe("deleted", by)
	if g.revoke != nil {
		if err := g.revoke(ctx, id); err != nil {
			return fmt.Errorf("the client is deleted, but revoking its tokens failed (its tokens are refused anyway; revoke again with its client_id): %w", err)
		}
	}
	return nil
}

// publish tells the other gateways that a client changed. The change is
// stored already; a gateway that misses the event catches up at its next
// resync, so a failure is logged, not returned.
func (g *Registry) publish(ctx context.Context, id string) {
	if g.feed == nil {
		return
	}
	if err := g.feed.PublishRevocation(ctx, stores.Revocation{Kind: stores.ChangedClient, Key: id}); err != nil {
		g.log.Error("telling the other gateways of a changed client failed; they see it at their next resync",
			zap.String("client_id", id), zap.Error(err))
	}
}
