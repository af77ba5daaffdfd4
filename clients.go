package oauth2

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/caddy-oauth2/issuer"
	"github.com/tokengate/caddy-oauth2/stores"
)

// Registration configures dynamic client registration (RFC 7591, RFC
// 7592) at /oauth2/register on every oauth2_server. Off unless set.
type Registration struct {
	// Open lets anyone register a client. Exactly one of open and
	// initial_access_token must be set.
	Open bool `json:"open,omitempty"`
	// InitialAccessToken is the bearer token a registration request must
	// carry (RFC 7591 §3), at least 32 bytes. Placeholders such as
	// {env.OAUTH2_DCR_TOKEN} are replaced.
	InitialAccessToken string `json:"initial_access_token,omitempty"`
	// Scopes are the most a registered client may be granted: a request's
	// scope is cut to them, one naming none gets them all. Default: none,
	// registered clients get no scope.
	Scopes []string `json:"scopes,omitempty"`
	// GrantTypes a registered client may use (authorization_code,
	// refresh_token, client_credentials; the last only for confidential
	// clients). Default: authorization_code and refresh_token.
	GrantTypes []string `json:"grant_types,omitempty"`
	// ClientLifetime, when set, is how long a registered client lives
	// after registering, its last RFC 7592 read or update, or its last
	// token (extended once half of it has passed). Default: 0, forever.
	ClientLifetime caddy.Duration `json:"client_lifetime,omitempty"`
	// MaxClients is the most live registered clients; further
	// registrations are refused with 400. Default: 10000.
	MaxClients int `json:"max_clients,omitempty"`
	// RateLimit is how many registrations one address (IPv6: its /64) may
	// make before each further one waits a backoff doubling from 1s to
	// 60s, forgotten 15 minutes after the last. Default: 10.
	RateLimit int `json:"rate_limit,omitempty"`
}

// provisionRegistry builds the in-memory registry of runtime clients over
// the access token store, when that store keeps clients.
func (a *App) provisionRegistry(repl *caddy.Replacer) error {
	if a.clientStore == nil {
		if a.Registration != nil {
			return errors.New("registration: the access_token_store cannot keep registered clients")
		}
		return nil
	}
	interval := time.Duration(a.RevocationFeedInterval)
	if interval <= 0 {
		interval = issuer.DefaultClientFeedInterval
	}
	var err error
	if a.registry, err = issuer.NewRegistry(issuer.RegistryConfig{
		Store:        a.clientStore,
		Feed:         a.tokenFeed,
		FeedInterval: interval,
		// The validation cache's follower reads the feed already.
		Followed:   a.follower != nil,
		Configured: a.clients,
		Revoke: func(ctx context.Context, clientID string) error {
			_, err := a.revokeSubject(ctx, "", clientID)
			if errors.Is(err, stores.ErrUnsupported) {
				return nil // the guard refuses the tokens of a client that is gone
			}
			return err
		},
		Observer: a.metrics,
		Logger:   a.logger.Named("clients"),
	}); err != nil {
		return err
	}
	if a.follower != nil {
		a.follower.OnClientChange = a.registry.Changed
	}
	if r := a.Registration; r != nil {
		a.registration = &issuer.Registration{
			Open:               r.Open,
			InitialAccessToken: repl.ReplaceAll(r.InitialAccessToken, ""),
			Scopes:             r.Scopes,
			GrantTypes:         r.GrantTypes,
			ClientLifetime:     time.Duration(r.ClientLifetime),
			MaxClients:         r.MaxClients,
			RateLimit:          r.RateLimit,
		}
	}
	return nil
}

// startRegistry loads the registered clients and follows their changes.
func (a *App) startRegistry() error {
	if a.registry == nil {
		return nil
	}
	if a.registration != nil && a.tokensInProcess {
		a.logger.Warn("dynamic client registration is on with the cache store: registered clients are lost when Caddy restarts, " +
			"and other gateways do not see them; use a SQL or Cassandra access_token_store")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.registry.Start(ctx); err != nil {
		return fmt.Errorf("client registry: %w", err)
	}
	return nil
}

// registeredScopes returns the scopes a client is registered for, in this
// configuration or at runtime, and whether it is registered: the guard's
// registration check.
func (a *App) registeredScopes(clientID string) (map[string]bool, bool) {
	if s, ok := a.clientScopes[clientID]; ok {
		return s, ok
	}
	if a.registry != nil {
		if s, ok := a.registry.Scopes(clientID); ok {
			return s, ok
		}
	}
	if a.cimd != nil && issuer.IsDocumentID(clientID) {
		// A client of a metadata document: the most such clients may have.
		return a.cimdScopes, true
	}
	return nil, false
}
