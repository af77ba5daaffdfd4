package external

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/caddy-oauth2/validator"
)

// Introspector asks one server's introspection endpoint (RFC 7662) about
// tokens, and keeps its positive answers for a while.
type Introspector struct {
	cfg   Config
	cache *validator.Memo[cached]

	// flights are the questions under way, by token hash: requests with
	// the same uncached token wait for one answer instead of each asking.
	mu      sync.Mutex
	flights map[[sha256.Size]byte]*flight
}

// flight is one question to the endpoint and, once done is closed, its
// answer.
type flight struct {
	done  chan struct{}
	grant validator.Grant
	err   error
}

// NewIntrospector returns the introspector of cfg.IntrospectionEndpoint.
func NewIntrospector(cfg Config) (*Introspector, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.IntrospectionEndpoint)
	if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("external: issuer %s: introspection endpoint %q is not an http(s) URL", cfg.Issuer, cfg.IntrospectionEndpoint)
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("external: issuer %s: introspection needs a client id and secret", cfg.Issuer)
	}
	in := &Introspector{cfg: cfg, flights: make(map[[sha256.Size]byte]*flight)}
	if cfg.CacheTTL > 0 {
		in.cache = validator.NewMemo[cached](cfg.CacheEntries)
	}
	return in, nil
}

// errInactive is the server's answer that the token is not active.
var errInactive = fmt.Errorf("%w: not active at its authorization server", validator.ErrInvalidToken)

// Introspect returns the grant of an active token. It fails with an error
// wrapping validator.ErrInvalidToken when the server says the token is not
// active (or not for us), with one wrapping ErrUnavailable when the server
// cannot answer.
func (in *Introspector) Introspect(ctx context.Context, raw string) (validator.Grant, error) {
	var key [sha256.Size]byte
	now := in.cfg.Now()
	if in.cache != nil {
		// The cache is keyed by a hash: a memory dump shows no token.
		key = sha256.Sum256([]byte(raw))
		if e, until, ok := in.cache.Get(key); ok && now.Before(until) {
			return e.grant, nil
		}
		return in.shared(ctx, raw, key, now)
	}
	return in.introspect(ctx, raw, key, now)
}

// shared asks about an uncached token, or waits for the answer of the
// request already asking.
func (in *Introspector) shared(ctx context.Context, raw string, key [sha256.Size]byte, now time.Time) (validator.Grant, error) {
	for {
		in.mu.Lock()
		f, waiting := in.flights[key]
		if !waiting {
			f = &flight{done: make(chan struct{})}
			in.flights[key] = f
		}
		in.mu.Unlock()
		if !waiting {
			f.grant, f.err = in.introspect(ctx, raw, key, now)
			in.mu.Lock()
			delete(in.flights, key)
			in.mu.Unlock()
			close(f.done)
			return f.grant, f.err
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return validator.Grant{}, fmt.Errorf("%w: waiting for introspection: %w", ErrUnavailable, ctx.Err())
		}
		// The asker's own request ended (its client left): ask again
		// rather than take its cancellation for an outage. A timeout is
		// an outage for all.
		if !errors.Is(f.err, context.Canceled) {
			return f.grant, f.err
		}
	}
}

// introspect asks the endpoint about raw and caches a positive answer under
// key.
func (in *Introspector) introspect(ctx context.Context, raw string, key [sha256.Size]byte, now time.Time) (validator.Grant, error) {
	claims, err := in.ask(ctx, raw)
	if err != nil {
		return validator.Grant{}, err
	}
	if active, _ := claims["active"].(bool); !active {
		return validator.Grant{}, errInactive
	}
	if tt, _ := claims["token_type"].(string); strings.EqualFold(tt, "refresh_token") {
		return validator.Grant{}, fmt.Errorf("%w: a refresh token", validator.ErrInvalidToken)
	}
	if iss, ok := claims["iss"].(string); ok && iss != in.cfg.Issuer {
		return validator.Grant{}, fmt.Errorf("%w: issued by %q", validator.ErrInvalidToken, iss)
	}
	if aud, ok := claims["aud"]; ok && len(in.cfg.Audiences) > 0 && !anyAudience(aud, in.cfg.Audiences) {
		return validator.Grant{}, fmt.Errorf("%w: not for this audience", validator.ErrInvalidToken)
	}
	t := grantToken(claims)
	if iat, ok := numericDate(claims["iat"]); ok {
		t.IssuedAt = iat
	}
	until := now.Add(in.cfg.CacheTTL)
	if exp, ok := numericDate(claims["exp"]); ok {
		t.ExpiresAt = exp.Add(in.cfg.Leeway)
		if exp.Before(until) {
			until = exp
		}
	} else {
		// No exp: the answer holds for as long as it may be reused, and a
		// minute when it may not.
		t.ExpiresAt = now.Add(max(in.cfg.CacheTTL, time.Minute))
	}
	g := validator.Grant{Token: t, Claims: claims, Foreign: true}
	if in.cache != nil && until.After(now) {
		in.cache.Put(key, cached{grant: g}, until, now)
	}
	return g, nil
}

// ask posts the token to the endpoint and decodes the answer.
func (in *Introspector) ask(ctx context.Context, raw string) (map[string]any, error) {
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.cfg.IntrospectionEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
	req.SetBasicAuth(url.QueryEscape(in.cfg.ClientID), url.QueryEscape(in.cfg.ClientSecret))
	resp, err := in.cfg.Client.Do(req)
	if err != nil {
		// The error names the endpoint, never the token (it is in the body).
		return nil, fmt.Errorf("%w: introspection: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusBadRequest {
		// Some servers (oidc-provider, for one) refuse with 400 to
		// introspect what they cannot parse, rather than answer
		// active:false (RFC 7662 §2.2).
		return map[string]any{"active": false}, nil
	}
	if resp.StatusCode != http.StatusOK {
		// 401 here means our own client id or secret is refused: a
		// configuration fault, not the token's.
		return nil, fmt.Errorf("%w: introspection at %s answered %s", ErrUnavailable, in.cfg.IntrospectionEndpoint, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("%w: introspection: %v", ErrUnavailable, err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		return nil, fmt.Errorf("%w: introspection answer is not a JSON object: %v", ErrUnavailable, err)
	}
	return claims, nil
}

// anyAudience reports whether aud (a string or an array of strings) holds
// one of want.
func anyAudience(aud any, want []string) bool {
	switch a := aud.(type) {
	case string:
		return slices.Contains(want, a)
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok && slices.Contains(want, s) {
				return true
			}
		}
	}
	return false
}

// Introspection is the source of opaque tokens: it recognises any token no
// earlier source did, so it belongs last, and asks each introspector in turn
// until one says the token is active.
type Introspection []*Introspector

// Recognize accepts any token of plausible length, except a JWT naming an
// issuer: had that issuer been configured, its JWT source would have
// recognised it, and sending another server's token to this one's
// endpoint would hand it over.
func (Introspection) Recognize(raw string) bool {
	if raw == "" || len(raw) > maxTokenLen {
		return false
	}
	iss, ok := peekIssuer(raw)
	return !ok || iss == ""
}

// Verify returns the first active answer. If none is active and some server
// could not answer, the token may be that server's: it is an outage, not a
// refusal.
func (s Introspection) Verify(ctx context.Context, raw string) (validator.Grant, error) {
	var outage error
	for _, in := range s {
		g, err := in.Introspect(ctx, raw)
		switch {
		case err == nil:
			return g, nil
		case errors.Is(err, ErrUnavailable):
			in.cfg.Log("introspection failed", err)
			outage = err
		}
	}
	if outage != nil {
		return validator.Grant{}, outage
	}
	return validator.Grant{}, errInactive
}

// cached is a positive answer (an introspection, a verified JWT), kept
// in a validator.Memo until it may no longer be reused.
type cached struct {
	grant validator.Grant
	// version is the key set a JWT verified against.
	version int
}

// Interface guards
var _ validator.Source = Introspection(nil)
