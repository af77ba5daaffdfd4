package external

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Keys are an issuer's signing keys, fetched and refreshed as keySet
// describes. Several JWT sources may share them: the adapter keeps them
// across configuration reloads, so that a reload while the issuer is down
// does not lose the last good set.
type Keys struct{ set *keySet }

// NewKeys returns the keys of cfg.Issuer, fetched with cfg's JWKSURI,
// MinRefreshInterval, MaxAge, Client, Now and Log. It does no I/O.
func NewKeys(cfg Config) (*Keys, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &cfg
	return &Keys{set: newKeySet(c, &discovery{cfg: c})}, nil
}

// keySet holds the issuer's public signing keys (RFC 7517). It fetches them
// on first use and again when a token names a key id it does not know, at
// most once per MinRefreshInterval so that tokens with made-up key ids cannot
// make it hammer the server. A set half as old as MaxAge is fetched again by
// the next request that finds the fetch free, so a key the server withdrew
// stops verifying. A failed fetch keeps the last good set, but never past
// MaxAge; a fetch answered 200 with no usable key empties it.
type keySet struct {
	cfg  *Config
	disc *discovery
	log  *limitedLog
	// fetching admits one fetch at a time; others wait for its result.
	fetching chan struct{}

	mu        sync.RWMutex
	keys      []jose.JSONWebKey // nil until a fetch succeeds
	version   int               // counts successful fetches
	fetched   time.Time         // last successful fetch
	attempted time.Time         // last fetch, successful or not
	lastErr   error             // of the last fetch
}

func newKeySet(cfg *Config, disc *discovery) *keySet {
	return &keySet{cfg: cfg, disc: disc, fetching: make(chan struct{}, 1),
		log: &limitedLog{cfg: cfg, msg: "fetching signing keys failed; keeping the last good set"}}
}

// failureRetry is how soon a fetch is retried while no set was ever fetched.
const failureRetry = time.Second

// lookup returns the keys a token signed under kid may be verified with
// (every key when kid is empty), and the version of the set they are from.
// An error means no set could be had at all.
func (k *keySet) lookup(ctx context.Context, kid string) ([]jose.JSONWebKey, int, error) {
	keys, version := k.current()
	if found := match(keys, kid); len(found) > 0 {
		if !k.due() {
			return found, version, nil
		}
		// Refetch unless another request already is (or, with a set too
		// old to use, after it); whatever the outcome, the key is judged
		// by the set held afterwards.
		_ = k.refresh(ctx, version, k.expired())
	} else if err := k.refresh(ctx, version, true); err != nil && keys == nil {
		return nil, 0, err
	}
	keys, version = k.current()
	if keys == nil {
		return nil, 0, fmt.Errorf("%w: no signing keys fetched yet: %w", ErrUnavailable, k.lastError())
	}
	if k.expired() {
		return nil, 0, fmt.Errorf("%w: the signing keys are older than their max age and cannot be refetched: %w", ErrUnavailable, k.lastError())
	}
	return match(keys, kid), version, nil
}

// current returns the set held and its version.
func (k *keySet) current() ([]jose.JSONWebKey, int) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys, k.version
}

// due reports whether the set is half as old as MaxAge: it is to be
// refetched, and a token verified against it is checked again.
func (k *keySet) due() bool {
	if k.cfg.MaxAge <= 0 {
		return false
	}
	now := k.cfg.Now()
	k.mu.RLock()
	defer k.mu.RUnlock()
	return now.Sub(k.fetched) >= k.cfg.MaxAge/2
}

// expired reports whether the set held is older than MaxAge: it is no
// longer used.
func (k *keySet) expired() bool {
	if k.cfg.MaxAge <= 0 {
		return false
	}
	now := k.cfg.Now()
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys != nil && now.Sub(k.fetched) >= k.cfg.MaxAge
}

func (k *keySet) lastError() error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.lastErr
}

// match returns the keys with the given kid, or all of them when kid is
// empty.
func match(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	for i := range keys {
		if keys[i].KeyID == kid {
			// Key ids are unique within a set (RFC 7517 §4.5) in practice;
			// the first wins.
			return keys[i : i+1]
		}
	}
	return nil
}

// refresh fetches the set unless another caller did since version was read,
// or the last fetch is too recent. With wait false it returns at once when
// another caller is fetching.
func (k *keySet) refresh(ctx context.Context, version int, wait bool) error {
	if wait {
		select {
		case k.fetching <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the signing keys: %w", ErrUnavailable, ctx.Err())
		}
	} else {
		select {
		case k.fetching <- struct{}{}:
		default:
			return nil
		}
	}
	defer func() { <-k.fetching }()
	k.mu.RLock()
	changed := k.version != version
	interval := k.cfg.MinRefreshInterval
	if k.keys == nil {
		interval = min(interval, failureRetry)
	}
	recent := !k.attempted.IsZero() && k.cfg.Now().Sub(k.attempted) < interval
	lastErr := k.lastErr
	k.mu.RUnlock()
	if changed {
		return nil
	}
	if recent {
		return lastErr
	}
	keys, err := k.fetch(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.attempted = k.cfg.Now()
	k.lastErr = err
	if err != nil {
		k.log.log(err)
		return err
	}
	k.keys = keys
	k.version++
	k.fetched = k.attempted
	return nil
}

// fetch reads the key set and keeps the public signing keys it can use.
// Keys it cannot parse (another kty, say) are skipped, not fatal.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	uri := k.cfg.JWKSURI
	if uri == "" {
		md, err := k.disc.get(ctx)
		if err != nil {
			return nil, err
		}
		if md.JWKSURI == "" {
			return nil, fmt.Errorf("%w: the metadata of %s has no jwks_uri", ErrUnavailable, k.cfg.Issuer)
		}
		uri = md.JWKSURI
	}
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := getJSON(ctx, k.cfg.Client, uri, &doc); err != nil {
		return nil, fmt.Errorf("%w: fetching signing keys: %w", ErrUnavailable, err)
	}
	if doc.Keys == nil {
		// RFC 7517 §5: "keys" is required; without it this is no key set
		// (an error page served with 200, say), not an empty one.
		return nil, fmt.Errorf("%w: %s is not a JWK set", ErrUnavailable, uri)
	}
	// Never nil: a set without usable keys withdraws them all.
	keys := make([]jose.JSONWebKey, 0, len(*doc.Keys))
	for _, raw := range *doc.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			continue
		}
		// Only public keys: a symmetric "oct" key in a published set would
		// let anyone who read it sign tokens (algorithm confusion).
		if !key.Valid() || !key.IsPublic() || key.Use != "" && key.Use != "sig" {
			continue
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// Lookup returns the keys a JWS signed under kid may be verified with (all
// of them when kid is empty), fetching the set on first use and again for
// an unknown kid at most once per MinRefreshInterval. An error wraps
// ErrUnavailable: no set could be had. The issuer verifies client
// assertions (private_key_jwt) with it.
func (k *Keys) Lookup(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	keys, _, err := k.set.lookup(ctx, kid)
	return keys, err
}
