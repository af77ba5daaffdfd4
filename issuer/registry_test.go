package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// fakeRegistry is an in-memory stores.ClientRegistry.
type fakeRegistry struct {
	mu      sync.Mutex
	now     func() time.Time
	clients map[string]*stores.RegisteredClient
}

func newFakeRegistry(now func() time.Time) *fakeRegistry {
	return &fakeRegistry{now: now, clients: map[string]*stores.RegisteredClient{}}
}

func (f *fakeRegistry) StartClients(context.Context) error { return nil }

func (f *fakeRegistry) CreateClient(_ context.Context, c *stores.RegisteredClient) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old := f.clients[c.ID]; old != nil && !old.Lapsed(f.now()) {
		return stores.ErrExists
	}
	f.clients[c.ID] = c.Clone()
	return nil
}

func (f *fakeRegistry) UpdateClient(_ context.Context, c *stores.RegisteredClient) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old := f.clients[c.ID]; old == nil || old.Lapsed(f.now()) {
		return stores.ErrNotFound
	}
	f.clients[c.ID] = c.Clone()
	return nil
}

func (f *fakeRegistry) DeleteClient(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clients[id] == nil {
		return stores.ErrNotFound
	}
	delete(f.clients, id)
	return nil
}

func (f *fakeRegistry) GetClient(_ context.Context, id string) (*stores.RegisteredClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.clients[id]; c != nil && !c.Lapsed(f.now()) {
		return c.Clone(), nil
	}
	return nil, stores.ErrNotFound
}

func (f *fakeRegistry) ListClients(context.Context) ([]*stores.RegisteredClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*stores.RegisteredClient
	for _, c := range f.clients {
		if !c.Lapsed(f.now()) {
			out = append(out, c.Clone())
		}
	}
	return out, nil
}

// withRegistry gives the test server a registry over a fake store, and
// registration when reg is set.
func withRegistry(t *testing.T, e **Registry, clk *clock, reg *Registration) func(*Config) {
	return func(cfg *Config) {
		g, err := NewRegistry(RegistryConfig{Store: newFakeRegistry(clk.Now), Configured: cfg.Clients, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Stop)
		cfg.Registry, cfg.Registration = g, reg
		*e = g
	}
}

func (e *env) ccStatus(id, secret string) int {
	e.t.Helper()
	return e.post(TokenPath, map[string][]string{"grant_type": {"client_credentials"}}, id, secret).status
}

// A rotated secret stops working when its grace ends, and at once without
// grace, even though its last success is remembered (verifySecret's memo).
func TestRegistryRotationEndsTheOldSecret(t *testing.T) {
	clk := newClock()
	var g *Registry
	e := newEnvClock(t, clk, withRegistry(t, &g, clk, nil))
	m, _ := ParseClientMetadata([]byte(`{"grant_types":["client_credentials"],"scope":"read"}`), true)
	rc, secret, err := g.NewRecord(m, stores.RegisteredByAdmin, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Create(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	if s := e.ccStatus(rc.ID, secret); s != 200 {
		t.Fatalf("registered client: %d", s)
	}
	next, err := g.RotateSecret(context.Background(), rc.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if e.ccStatus(rc.ID, secret) != 200 || e.ccStatus(rc.ID, next) != 200 || e.ccStatus(rc.ID, secret) != 200 {
		t.Fatal("during the grace period both secrets work")
	}
	clk.Advance(time.Hour + time.Second)
	if s := e.ccStatus(rc.ID, secret); s != 401 {
		t.Errorf("the old secret after its grace period (remembered during it): %d", s)
	}
	if s := e.ccStatus(rc.ID, next); s != 200 {
		t.Errorf("the new secret: %d", s)
	}
	last, err := g.RotateSecret(context.Background(), rc.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s := e.ccStatus(rc.ID, next); s != 401 {
		t.Errorf("a secret rotated without grace (remembered): %d", s)
	}
	if s := e.ccStatus(rc.ID, last); s != 200 {
		t.Errorf("the newest secret: %d", s)
	}
	// The configured clients' IDs are not the registry's.
	if err := g.Delete(context.Background(), "svc"); err != ErrConfiguredClient {
		t.Errorf("deleting a configured client: %v", err)
	}
	m, _ = ParseClientMetadata([]byte(`{"client_id":"svc","grant_types":["client_credentials"]}`), true)
	if rc, _, err := g.NewRecord(m, stores.RegisteredByAdmin, 0); err == nil {
		if err := g.Create(context.Background(), rc); err != stores.ErrExists {
			t.Errorf("registering a configured client's ID: %v", err)
		}
	}
}

// The RFC 7592 registration access token and the client lapse with
// client_lifetime; max_clients refuses registrations beyond it.
func TestRegisterLifetimeAndMaxClients(t *testing.T) {
	clk := newClock()
	var g *Registry
	reg := &Registration{Open: true, Scopes: []string{"read"}, ClientLifetime: time.Hour, MaxClients: 2}
	e := newEnvClock(t, clk, withRegistry(t, &g, clk, reg))
	register := func() (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+RegisterPath,
			strings.NewReader(`{"redirect_uris":["https://dcr.example/cb"],"grant_types":["authorization_code"]}`))
		req.Header.Set("Content-Type", "application/json")
		res := e.do(req)
		var v map[string]any
		_ = json.Unmarshal([]byte(res.body), &v)
		return res.status, v
	}
	status, v := register()
	if status != 201 {
		t.Fatalf("register: %d %v", status, v)
	}
	if exp := int64(v["client_secret_expires_at"].(float64)); exp != clk.Now().Add(time.Hour).Unix() {
		t.Errorf("client_secret_expires_at %d", exp)
	}
	read := func(rat string) int {
		req, _ := http.NewRequest(http.MethodGet, v["registration_client_uri"].(string), nil)
		req.Header.Set("Authorization", "Bearer "+rat)
		return e.do(req).status
	}
	if status, _ := register(); status != 201 {
		t.Fatalf("second registration: %d", status)
	}
	if status, v := register(); status != 400 || v["error"] != "invalid_client_metadata" {
		t.Errorf("beyond max_clients: %d %v", status, v)
	}
	clk.Advance(time.Hour + time.Second)
	if s := read(v["registration_access_token"].(string)); s != 401 {
		t.Errorf("the registration access token of a lapsed client: %d", s)
	}
	if _, ok := g.Scopes(v["client_id"].(string)); ok {
		t.Error("the guard still sees a lapsed client")
	}
	if status, _ := register(); status != 201 {
		t.Errorf("lapsed clients still count against max_clients: %d", status)
	}
}

// A self-registered client that gets tokens does not lapse: its lifetime
// is extended once half of it has passed.
func TestRegisteredClientInUseDoesNotLapse(t *testing.T) {
	clk := newClock()
	var g *Registry
	reg := &Registration{Open: true, Scopes: []string{"read"}, GrantTypes: []string{"client_credentials"}, ClientLifetime: time.Hour}
	e := newEnvClock(t, clk, withRegistry(t, &g, clk, reg))
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+RegisterPath, strings.NewReader(`{"grant_types":["client_credentials"]}`))
	req.Header.Set("Content-Type", "application/json")
	res := e.do(req)
	var v map[string]any
	if json.Unmarshal([]byte(res.body), &v) != nil || res.status != 201 {
		t.Fatalf("register: %d %s", res.status, res.body)
	}
	id, secret := v["client_id"].(string), v["client_secret"].(string)
	clk.Advance(40 * time.Minute)
	if s := e.ccStatus(id, secret); s != 200 {
		t.Fatalf("token: %d", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rc, ok := g.Get(id)
		if ok && rc.ExpiresAt.Equal(clk.Now().Add(time.Hour)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lifetime was not extended: %v", rc.ExpiresAt)
		}
		time.Sleep(10 * time.Millisecond)
	}
	clk.Advance(30 * time.Minute) // 70 minutes after registering
	if s := e.ccStatus(id, secret); s != 200 {
		t.Errorf("a client in use lapsed: %d", s)
	}
	clk.Advance(2 * time.Hour)
	if s := e.ccStatus(id, secret); s != 401 {
		t.Errorf("an unused client did not lapse: %d", s)
	}
}

// An update that does not name token_endpoint_auth_method keeps the
// client's; naming the other kind is refused, naming the field.
func TestApplyKeepsTheClientKind(t *testing.T) {
	clk := newClock()
	g, _ := NewRegistry(RegistryConfig{Store: newFakeRegistry(clk.Now), Now: clk.Now})
	m, _ := ParseClientMetadata([]byte(`{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none"}`), true)
	rc, secret, err := g.NewRecord(m, stores.RegisteredByAdmin, 0)
	if err != nil || secret != "" {
		t.Fatalf("public client: %v %q", err, secret)
	}
	m, _ = ParseClientMetadata([]byte(`{"redirect_uris":["https://b.example/cb"]}`), true)
	if next, err := g.Apply(rc, m); err != nil || len(next.SecretHash) != 0 || next.RedirectURIs[0] != "https://b.example/cb" {
		t.Errorf("update of a public client: %v %+v", err, next)
	}
	m, _ = ParseClientMetadata([]byte(`{"redirect_uris":["https://b.example/cb"],"token_endpoint_auth_method":"client_secret_post"}`), true)
	var me *MetadataError
	if _, err := g.Apply(rc, m); !errors.As(err, &me) || me.Field != "token_endpoint_auth_method" {
		t.Errorf("public to confidential: %v", err)
	}
	m, me = ParseClientMetadata([]byte(`{"redirect_uris":["https://a.example/cb"],"scope":7}`), true)
	if me == nil || me.Field != "scope" || me.Code != ErrCodeInvalidClientMetadata {
		t.Errorf("a scope of the wrong type: %v", me)
	}
}
