package external

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/caddy-oauth2/token"
	"github.com/tokengate/caddy-oauth2/validator"
)

// Introspector asks one server's introspection endpoint (RFC 7662) about
// tokens, at most MaxConcurrent at once, and keeps its answers for a while:
// positive ones for CacheTTL, negative ones for NegativeCacheTTL.
type Introspector struct {
	cfg      Config
	cache    *validator.Memo[cached]
	negative *validator.Memo[struct{}]
	// slots holds one value per call under way.
	slots chan struct{}
	// failed and busy log outages and refusals, rate-limited.
	failed, busy *limitedLog

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
	if cfg.IntrospectionEndpoint == "" {
		return nil, fmt.Errorf("external: issuer %s: no introspection endpoint", cfg.Issuer)
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("external: issuer %s: introspection needs a client id and secret", cfg.Issuer)
	}
	for _, p := range cfg.TokenPrefixes {
		if p == "" {
			return nil, fmt.Errorf("external: issuer %s: empty token prefix", cfg.Issuer)
		}
	}
	in := &Introspector{
		cfg:     cfg,
		flights: make(map[[sha256.Size]byte]*flight),
		slots:   make(chan struct{}, cfg.MaxConcurrent),
	}
	in.failed = &limitedLog{cfg: &in.cfg, msg: "introspection failed"}
	in.busy = &limitedLog{cfg: &in.cfg, msg: "introspection refused: every slot is taken (introspection_max_concurrent)"}
	if cfg.CacheTTL > 0 {
		in.cache = validator.NewMemo[cached](cfg.CacheEntries)
	}
	if cfg.NegativeCacheTTL > 0 {
		in.negative = validator.NewMemo[struct{}](cfg.CacheEntries)
	}
	return in, nil
}

// errInactive is the server's answer that the token is not active.
var errInactive = fmt.Errorf("%w: not active at its authorization server", validator.ErrInvalidToken)

// errBusy is a call not made: every slot was taken.
var errBusy = fmt.Errorf("%w: %w", ErrUnavailable, validator.ErrOverloaded)

// Introspect returns the grant of an active token. It fails with an error
// wrapping validator.ErrInvalidToken when the server says the token is not
// active (or not for us), with one wrapping ErrUnavailable when the server
// cannot answer or every slot is taken (then validator.ErrOverloaded too).
func (in *Introspector) Introspect(ctx context.Context, raw string) (validator.Grant, error) {
	now := in.cfg.Now()
	// The caches are keyed by a hash: a memory dump shows no token.
	key := sha256.Sum256([]byte(raw))
	if g, ok, err := in.remembered(key, now); ok {
		return g, err
	}
	return in.shared(ctx, raw, key, now)
}

// remembered returns the cached answer about the token with hash key, if
// any.
func (in *Introspector) remembered(key [sha256.Size]byte, now time.Time) (validator.Grant, bool, error) {
	if in.cache != nil {
		if e, until, ok := in.cache.Get(key); ok && now.Before(until) {
			return e.grant, true, nil
		}
	}
	if in.negative != nil {
		if _, until, ok := in.negative.Get(key); ok && now.Before(until) {
			return validator.Grant{}, true, errInactive
		}
	}
	return validator.Grant{}, false, nil
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
		// The asker's own request ended (its client left, or another
		// server answered first): ask again rather than take its
		// cancellation for an outage. A timeout is an outage for all.
		if !errors.Is(f.err, context.Canceled) {
			return f.grant, f.err
		}
	}
}

// introspect asks the endpoint about raw, if a slot is free, and caches
// the answer under key.
func (in *Introspector) introspect(ctx context.Context, raw string, key [sha256.Size]byte, now time.Time) (validator.Grant, error) {
	select {
	case in.slots <- struct{}{}:
	default:
		in.busy.log(errBusy)
		return validator.Grant{}, errBusy
	}
	claims, err := in.ask(ctx, raw)
	<-in.slots
	if err != nil {
		if ctx.Err() == nil {
			in.failed.log(err)
		}
		return validator.Grant{}, err
	}
	g, err := in.judge(claims, now)
	if errors.Is(err, errNotYet) {
		return validator.Grant{}, err
	}
	if err != nil {
		// RFC 7662 §2.2: a token once inactive stays so, and a token that
		// is not an access token never becomes one.
		if in.negative != nil {
			in.negative.Put(key, struct{}{}, now.Add(in.cfg.NegativeCacheTTL), now)
		}
		return validator.Grant{}, err
	}
	until := now.Add(in.cfg.CacheTTL)
	if g.Token.ExpiresAt.Add(-in.cfg.Leeway).Before(until) {
		until = g.Token.ExpiresAt.Add(-in.cfg.Leeway)
	}
	if in.cache != nil && until.After(now) {
		in.cache.Put(key, cached{grant: g}, until, now)
	}
	return g, nil
}

// errNotYet is an answer whose nbf is still to come.
var errNotYet = fmt.Errorf("%w: not valid yet (nbf)", validator.ErrInvalidToken)

// judge turns an introspection answer into a grant, strictly: only an
// active access token, usable as a bearer token, for us, with well-typed
// claims, passes.
func (in *Introspector) judge(claims map[string]any, now time.Time) (validator.Grant, error) {
	if active, _ := claims["active"].(bool); !active {
		return validator.Grant{}, errInactive
	}
	// Ory Hydra says what a token is in token_use, others in token_type
	// (RFC 7662 §2.2 leaves its values open). Only access tokens pass.
	if v, ok := claims["token_use"]; ok {
		if s, _ := v.(string); s != "access_token" {
			return validator.Grant{}, fmt.Errorf("%w: token_use %v is not access_token", validator.ErrInvalidToken, v)
		}
	}
	// RFC 9449 §6.2: a DPoP-bound token has cnf.jkt, which the validator
	// checks the request's proof against; a cnf the guard cannot check is
	// refused.
	jkt, err := confirmation(claims)
	if err != nil {
		return validator.Grant{}, err
	}
	if v, ok := claims["token_type"]; ok {
		// A DPoP-bound token says token_type DPoP (RFC 9449 §6.2), and
		// then needs its key; a refresh token never passes.
		s, _ := v.(string)
		dpopBound := strings.EqualFold(s, "dpop") && jkt != ""
		if !dpopBound && !strings.EqualFold(s, "bearer") && !strings.EqualFold(s, "access_token") {
			return validator.Grant{}, fmt.Errorf("%w: token_type %v", validator.ErrInvalidToken, v)
		}
	}
	if v, ok := claims["iss"]; ok {
		if iss, _ := v.(string); iss != in.cfg.Issuer {
			return validator.Grant{}, fmt.Errorf("%w: issued by %v", validator.ErrInvalidToken, v)
		}
	}
	if aud, ok := claims["aud"]; ok && len(in.cfg.Audiences) > 0 && !anyAudience(aud, in.cfg.Audiences) {
		return validator.Grant{}, fmt.Errorf("%w: not for this audience", validator.ErrInvalidToken)
	}
	var dates [3]time.Time
	for i, name := range []string{"exp", "nbf", "iat"} {
		v, ok := claims[name]
		if !ok {
			continue
		}
		if dates[i], ok = numericDate(v); !ok {
			return validator.Grant{}, fmt.Errorf("%w: %s is not a NumericDate", validator.ErrInvalidToken, name)
		}
	}
	exp, nbf, iat := dates[0], dates[1], dates[2]
	if !nbf.IsZero() && nbf.After(now.Add(in.cfg.Leeway)) {
		return validator.Grant{}, errNotYet
	}
	t := grantToken(claims)
	t.IssuedAt = iat
	if !exp.IsZero() {
		t.ExpiresAt = exp.Add(in.cfg.Leeway)
	} else {
		// No exp: the answer holds for as long as it may be reused, and a
		// minute when it may not.
		t.ExpiresAt = now.Add(max(in.cfg.CacheTTL, time.Minute))
	}
	return validator.Grant{Token: t, Claims: claims, Issuer: in.cfg.foreign, JKT: jkt}, nil
}

// ask posts the token to the endpoint and decodes the answer. It never
// follows a redirect: the token and our credentials go to the configured
// endpoint or nowhere.
func (in *Introspector) ask(ctx context.Context, raw string) (map[string]any, error) {
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	// RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
	status, b, err := in.cfg.Client.PostForm(ctx, in.cfg.IntrospectionEndpoint, form,
		url.QueryEscape(in.cfg.ClientID), url.QueryEscape(in.cfg.ClientSecret), "application/json")
	if err != nil {
		// The error names the endpoint, never the token (it is in the body).
		return nil, fmt.Errorf("%w: introspection: %w", ErrUnavailable, err)
	}
	if status == http.StatusBadRequest {
		// Some servers (oidc-provider, for one) refuse with 400 to
		// introspect what they cannot parse, rather than answer
		// active:false (RFC 7662 §2.2).
		return map[string]any{"active": false}, nil
	}
	if status != http.StatusOK {
		// 401 here means our own client id or secret is refused: a
		// configuration fault, not the token's.
		return nil, fmt.Errorf("%w: introspection at %s answered %d %s", ErrUnavailable, in.cfg.IntrospectionEndpoint, status, http.StatusText(status))
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil || claims == nil {
		return nil, fmt.Errorf("%w: introspection answer is not a JSON object: %v", ErrUnavailable, err)
	}
	return claims, nil
}

// claims reports whether raw has one of the prefixes this server claims.
func (in *Introspector) claims(raw string) bool {
	for _, p := range in.cfg.TokenPrefixes {
		if strings.HasPrefix(raw, p) {
			return true
		}
	}
	return false
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
// earlier source did, so it belongs last. A token with a prefix an
// introspector claims (TokenPrefixes) goes to that one only; any other goes
// to every introspector that claims no prefix, all at once: the first
// active answer decides and the other calls are cancelled, so that a slow
// or overloaded server delays or fails only its own tokens.
type Introspection []*Introspector

// Recognize accepts any token of plausible length, except a JWT naming an
// issuer (had that issuer been configured, its JWT source would have
// recognised it, and sending another server's token to this one's
// endpoint would hand it over) and a code or token of ours.
func (Introspection) Recognize(raw string) bool {
	if raw == "" || len(raw) > maxTokenLen || token.Ours(raw) {
		return false
	}
	iss, ok := peekIssuer(raw)
	return !ok || iss == ""
}

// SelfTimed implements validator.SelfTimed: each call has its issuer's
// timeout.
func (Introspection) SelfTimed() {}

// route returns the introspectors to ask about raw.
func (s Introspection) route(raw string) []*Introspector {
	for _, in := range s {
		if in.claims(raw) {
			return []*Introspector{in}
		}
	}
	var general []*Introspector
	for _, in := range s {
		if len(in.cfg.TokenPrefixes) == 0 {
			general = append(general, in)
		}
	}
	return general
}

// Verify returns an active answer. If none is active and some server could
// not answer, the token may be that server's: it is an outage, not a
// refusal.
func (s Introspection) Verify(ctx context.Context, raw string) (validator.Grant, error) {
	targets := s.route(raw)
	switch len(targets) {
	case 0:
		return validator.Grant{}, errInactive
	case 1:
		return targets[0].Introspect(ctx, raw)
	}
	// Cached answers first, without a goroutine: a flood of repeated
	// made-up tokens costs a hash and two map reads per issuer.
	key := sha256.Sum256([]byte(raw))
	now := targets[0].cfg.Now()
	ask := make([]*Introspector, 0, len(targets))
	for _, in := range targets {
		g, ok, err := in.remembered(key, now)
		switch {
		case !ok:
			ask = append(ask, in)
		case err == nil:
			return g, nil
		}
	}
	if len(ask) == 0 {
		return validator.Grant{}, errInactive
	}
	targets = ask
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		g   validator.Grant
		err error
	}
	answers := make(chan answer, len(targets))
	for _, in := range targets {
		go func() {
			g, err := in.Introspect(ctx, raw)
			answers <- answer{g, err}
		}()
	}
	var outage error
	for range targets {
		a := <-answers
		switch {
		case a.err == nil:
			return a.g, nil // the deferred cancel ends the other calls
		case errors.Is(a.err, ErrUnavailable):
			outage = a.err
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

// numericDate reads a JSON number of seconds since the epoch (RFC 7519
// §2), between 1970 and 9999.
func numericDate(v any) (time.Time, bool) {
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return time.Time{}, false
		}
	default:
		return time.Time{}, false
	}
	if math.IsNaN(f) || f < 0 || f > 253402300799 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// Interface guards
var (
	_ validator.Source    = Introspection(nil)
	_ validator.SelfTimed = Introspection(nil)
)
