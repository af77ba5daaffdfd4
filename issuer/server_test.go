package issuer

import (
	"strings"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/token"
)

func TestNewValidation(t *testing.T) {
	store := newFakeStore(time.Now)
	good := func() Config {
		return Config{Clients: testClients(t), Codes: store, Tokens: store, Hasher: token.NewHasher([]byte("k"))}
	}
	withClient := func(c *Client) func(*Config) {
		return func(cfg *Config) { cfg.Clients["x"] = c }
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no code store", func(c *Config) { c.Codes = nil }, "stores"},
		{"no token store", func(c *Config) { c.Tokens = nil }, "stores"},
		{"no hasher", func(c *Config) { c.Hasher = nil }, "hasher"},
		{"no clients", func(c *Config) { c.Clients = nil }, "client"},
		{"nil client", withClient(nil), "nil client"},
		{"empty client ID", func(c *Config) { c.Clients[""] = &Client{RedirectURIs: []string{"https://a/"}} }, "empty client ID"},
		{"ID differs from key", withClient(&Client{ID: "y", RedirectURIs: []string{"https://a/"}}), "differs"},
		{"bad hash", withClient(&Client{SecretHash: []byte("plaintext"), RedirectURIs: []string{"https://a/"}}), "bcrypt"},
		{"public without redirect", withClient(&Client{}), "redirect URI"},
		{"code grant without redirect", withClient(&Client{SecretHash: hash(t, "s")}), "redirect URI"},
		{"public client_credentials", withClient(&Client{RedirectURIs: []string{"https://a/"}, GrantTypes: []string{"client_credentials"}}), "public"},
		{"public introspect", withClient(&Client{RedirectURIs: []string{"https://a/"}, Introspect: true}), "introspect"},
		{"unknown grant", withClient(&Client{SecretHash: hash(t, "s"), GrantTypes: []string{"password"}}), "password"},
		{"implicit grant", withClient(&Client{SecretHash: hash(t, "s"), GrantTypes: []string{"implicit"}}), "implicit"},
		{"relative redirect", withClient(&Client{RedirectURIs: []string{"/cb"}}), "absolute"},
		{"fragment redirect", withClient(&Client{RedirectURIs: []string{"https://a/cb#x"}}), "fragment"},
		{"empty fragment redirect", withClient(&Client{RedirectURIs: []string{"https://a/cb#"}}), "fragment"},
		{"unparsable redirect", withClient(&Client{RedirectURIs: []string{"https://a b/%zz"}}), "redirect URI"},
		{"bad scope", withClient(&Client{RedirectURIs: []string{"https://a/"}, Scopes: []string{"a b"}}), "scope"},
		{"quote in scope", withClient(&Client{RedirectURIs: []string{"https://a/"}, Scopes: []string{`a"`}}), "scope"},
		{"empty scope", withClient(&Client{RedirectURIs: []string{"https://a/"}, Scopes: []string{""}}), "scope"},
		{"duplicate scope", withClient(&Client{RedirectURIs: []string{"https://a/"}, Scopes: []string{"a", "a"}}), "duplicate"},
		{"issuer with query", func(c *Config) { c.Issuer = "https://a.example/?x=1" }, "issuer"},
		{"issuer with fragment", func(c *Config) { c.Issuer = "https://a.example/#x" }, "issuer"},
		{"issuer without host", func(c *Config) { c.Issuer = "https:///x" }, "issuer"},
		{"issuer scheme", func(c *Config) { c.Issuer = "ftp://a.example" }, "issuer"},
		{"negative lifetime", func(c *Config) { c.AccessTokenLifetime = -time.Second }, "lifetime"},
		{"sub-second lifetime", func(c *Config) { c.CodeLifetime = time.Millisecond }, "lifetime"},
		{"negative body", func(c *Config) { c.MaxBodyBytes = -1 }, "body"},
		{"negative timeout", func(c *Config) { c.StoreTimeout = -1 }, "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("good config: %v", err)
	}
}

func TestNewDefaults(t *testing.T) {
	store := newFakeStore(time.Now)
	clients := map[string]*Client{
		"c": {SecretHash: hash(t, "s"), RedirectURIs: []string{"https://a/"}},
		"p": {ID: "p", RedirectURIs: []string{"com.example.app:/cb"}},
	}
	s, err := New(Config{Clients: clients, Codes: store, Tokens: store, Hasher: token.NewHasher([]byte("k"))})
	if err != nil {
		t.Fatal(err)
	}
	if s.codeTTL != 600*time.Second || s.accessTTL != time.Hour || s.refreshTTL != 12*time.Hour ||
		s.maxBody != 64<<10 || s.storeTimeout != 2*time.Second || len(s.csrfKey) != 32 || s.log == nil || s.now == nil {
		t.Errorf("defaults not applied: %+v", s)
	}
	c, p := s.clients["c"], s.clients["p"]
	if !c.grants["authorization_code"] || !c.grants["refresh_token"] || !c.grants["client_credentials"] {
		t.Errorf("confidential default grants %v", c.grants)
	}
	if !p.grants["authorization_code"] || !p.grants["refresh_token"] || p.grants["client_credentials"] {
		t.Errorf("public default grants %v", p.grants)
	}
	if !p.Public() || c.Public() {
		t.Error("Public() wrong")
	}
	// The caller's structs are not changed.
	if clients["c"].ID != "" || clients["c"].GrantTypes != nil {
		t.Error("New modified the caller's client")
	}
}
