// Package cache is the default store: codes and tokens in process memory, on
// bigcache. It needs no server, loses everything on restart (not on reload),
// and is bounded in size: when full it never drops a live code, token,
// family index, consumed record or revoked-family marker; it refuses to issue
// new codes and tokens (ErrUnavailable, a 503 at the token endpoint) and logs
// a warning.
package cache

import (
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tokengate/caddy-oauth2/stores"
)

func init() { caddy.RegisterModule(new(Store)) }

// Defaults.
const (
	defaultName      = "default"
	defaultMaxMemory = 256
	defaultShards    = 256
	// minShardBytes keeps every shard big enough for a large code or a
	// long family index.
	minShardBytes = 64 << 10
	// maxShardMB keeps a shard's buffer addressable by bigcache's uint32
	// offsets.
	maxShardMB = 4095
)

// pool shares one engine between every store with the same name and size,
// across config reloads: tokens issued before a reload still validate after
// it, and a code store and a token store configured alike share one cache.
var pool = caddy.NewUsagePool()

// Store keeps codes and tokens in memory. Stores in one process with the same
// name and settings share one cache, also across config reloads; changing
// max_memory or shards starts an empty cache.
type Store struct {
	// Name tells caches apart. Default: "default".
	Name string `json:"name,omitempty"`
	// MaxMemory bounds the cache's records in megabytes; the maps indexing
	// them take about 40 bytes per record more, and live records evicted
	// from a full shard are kept in an overflow of up to max_memory/8 (at
	// least 64 KiB). Once that is used, issuing codes and tokens fails with
	// 503 temporarily_unavailable and a warning is logged; nothing live is
	// dropped. Default: 256.
	MaxMemory int `json:"max_memory,omitempty"`
	// Shards is the number of independently locked parts of the cache, a
	// power of two; each gets max_memory/shards and must get at least 64
	// KiB. Default: 256, or as many as max_memory allows.
	Shards int `json:"shards,omitempty"`

	// Engine is the shared store behind this module; its methods make
	// Store a stores.Store.
	*Engine `json:"-"`
	poolKey string
}

// CaddyModule returns the Caddy module information.
func (*Store) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "oauth2.stores.cache",
		New: func() caddy.Module { return new(Store) },
	}
}

// Provision takes the shared cache from the pool, making it if needed. It
// allocates a few MB at most and starts nothing.
func (s *Store) Provision(ctx caddy.Context) error {
	if s.Name == "" {
		s.Name = defaultName
	}
	if s.MaxMemory == 0 {
		s.MaxMemory = defaultMaxMemory
	}
	if s.Shards == 0 {
		s.Shards = defaultShards
		for s.Shards > 1 && s.MaxMemory<<20/s.Shards < minShardBytes {
			s.Shards /= 2
		}
	}
	if err := s.Validate(); err != nil {
		return err
	}
	logger := ctx.Logger()
	s.poolKey = fmt.Sprintf("cache/%s/%d/%d", s.Name, s.MaxMemory, s.Shards)
	v, loaded, err := pool.LoadOrNew(s.poolKey, func() (caddy.Destructor, error) {
		e, err := New(Config{MaxMemoryMB: s.MaxMemory, Shards: s.Shards, Logger: logger})
		if err != nil {
			return nil, err
		}
		return pooled{e}, nil
	})
	if err != nil {
		s.poolKey = ""
		return fmt.Errorf("cache %q: %w", s.Name, err)
	}
	s.Engine = v.(pooled).Engine
	if loaded {
		// The previous config's logger may be closed after the reload.
		s.Engine.SetLogger(logger)
	}
	return nil
}

// Validate checks the settings.
func (s *Store) Validate() error {
	if s.MaxMemory < 0 {
		return fmt.Errorf("cache %q: max_memory must be at least 1 (megabytes), got %d", s.Name, s.MaxMemory)
	}
	if s.Shards < 0 || s.Shards&(s.Shards-1) != 0 {
		return fmt.Errorf("cache %q: shards must be a power of two, got %d", s.Name, s.Shards)
	}
	if s.MaxMemory > 0 && s.Shards > 0 {
		if s.MaxMemory<<20/s.Shards < minShardBytes {
			return fmt.Errorf("cache %q: %d shards leave less than 64 KiB each of max_memory %d MB; use at most %d shards",
				s.Name, s.Shards, s.MaxMemory, s.MaxMemory<<20/minShardBytes)
		}
		if s.MaxMemory/s.Shards > maxShardMB {
			return fmt.Errorf("cache %q: max_memory %d MB over %d shards exceeds %d MB per shard; use more shards",
				s.Name, s.MaxMemory, s.Shards, maxShardMB)
		}
	}
	return nil
}

// Cleanup releases the cache; the last store using it closes it.
func (s *Store) Cleanup() error {
	if s.poolKey == "" {
		return nil
	}
	_, err := pool.Delete(s.poolKey)
	s.poolKey = ""
	return err
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	cache {
//	    name       <name>
//	    max_memory <megabytes>
//	    shards     <power of two>
//	}
//
// The block is optional.
func (s *Store) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the store name, "cache"
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("duplicate subdirective %q", opt)
		}
		seen[opt] = true
		var arg string
		switch opt {
		case "name", "max_memory", "shards":
			if !d.NextArg() {
				return d.ArgErr()
			}
			arg = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized subdirective %q", opt)
		}
		switch opt {
		case "name":
			s.Name = arg
		case "max_memory":
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 {
				return d.Errf("max_memory must be a whole number of megabytes, at least 1: %q", arg)
			}
			s.MaxMemory = n
		case "shards":
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 || n&(n-1) != 0 {
				return d.Errf("shards must be a power of two: %q", arg)
			}
			s.Shards = n
		}
	}
	return nil
}

// pooled is the pool's value: the last Delete closes the engine.
type pooled struct{ *Engine }

func (p pooled) Destruct() error { return p.Close() }

// Interface guards
var (
	_ caddy.Provisioner     = (*Store)(nil)
	_ caddy.Validator       = (*Store)(nil)
	_ caddy.CleanerUpper    = (*Store)(nil)
	_ caddyfile.Unmarshaler = (*Store)(nil)
	_ stores.Store          = (*Store)(nil)
	_ stores.ClientRegistry = (*Store)(nil)
	_ stores.SingleUse      = (*Store)(nil)
	_ caddy.Destructor      = pooled{}
)
