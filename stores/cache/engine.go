package cache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"
	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/stores"
)

// Config sizes an Engine.
type Config struct {
	// MaxMemoryMB bounds the entries' memory in megabytes (bigcache's
	// HardMaxCacheSize); the maps indexing them come on top. Must be > 0.
	MaxMemoryMB int
	// Shards is the number of independently locked parts, a power of two.
	// Each holds MaxMemoryMB/Shards, which must fit the largest record.
	Shards int
	// Logger receives the warning when live records are evicted because
	// the cache is full. Nil logs nothing.
	Logger *zap.Logger
}

// Engine is an in-process stores.Store on bigcache. It holds no goroutine:
// expired records stay (and behave as absent) until PurgeExpired* removes
// them, and bigcache evicts the oldest entries only when it is full.
type Engine struct {
	cache *bigcache.BigCache
	seed  maphash.Seed

	// Consumes are get-check-set, which bigcache cannot do atomically:
	// keyLocks serialise them per key (stripe), and famLocks serialise
	// updates of a family index against RevokeFamily. Lock order: family,
	// then key.
	keyLocks [256]sync.Mutex
	famLocks [256]sync.Mutex

	logger    atomic.Pointer[zap.Logger]
	evictions atomic.Uint64
	lastWarn  atomic.Int64
	maxMemory int
	closed    atomic.Bool
}

// warnEvery rate-limits the eviction warning.
const warnEvery = time.Minute

// lifeWindow is longer than any code or token lives: bigcache must never
// drop an entry for its age, the records carry their own expiry.
const lifeWindow = 10 * 365 * 24 * time.Hour

// pruneFrom is the family index size from which appends drop members that
// are gone, at every power of two, so long-lived refresh chains do not grow
// their index without bound.
const pruneFrom = 64

// New makes an empty engine. It allocates a little memory per shard and
// starts nothing.
func New(cfg Config) (*Engine, error) {
	if cfg.MaxMemoryMB <= 0 {
		return nil, fmt.Errorf("max memory must be at least 1 MB, got %d", cfg.MaxMemoryMB)
	}
	if cfg.Shards <= 0 || cfg.Shards&(cfg.Shards-1) != 0 {
		return nil, fmt.Errorf("shards must be a power of two, got %d", cfg.Shards)
	}
	e := &Engine{seed: maphash.MakeSeed(), maxMemory: cfg.MaxMemoryMB}
	e.SetLogger(cfg.Logger)
	bc := bigcache.Config{
		Shards:     cfg.Shards,
		LifeWindow: lifeWindow,
		// No cleanup goroutine: the purger expires records, and bigcache's
		// own clock knows nothing of their expiry anyway.
		CleanWindow: 0,
		// Start small (about 4 KiB per shard); bigcache doubles a shard's
		// buffer as needed up to MaxMemoryMB/Shards.
		MaxEntriesInWindow: cfg.Shards * 16,
		MaxEntrySize:       256,
		HardMaxCacheSize:   cfg.MaxMemoryMB,
		Hasher:             hasher{e.seed},
		OnRemoveWithReason: e.onRemove,
		Logger:             bigcache.DefaultLogger(),
	}
	// Only NoSpace calls back; deletes stay cheap.
	bc = bc.OnRemoveFilterSet(bigcache.NoSpace)
	c, err := bigcache.New(context.Background(), bc)
	if err != nil {
		return nil, err
	}
	e.cache = c
	return e, nil
}

// SetLogger replaces the logger for eviction warnings; a config reload
// hands the shared engine the new config's logger.
func (e *Engine) SetLogger(l *zap.Logger) {
	if l == nil {
		l = zap.NewNop()
	}
	e.logger.Store(l)
}

// Evictions returns how many live records were dropped because the cache
// was full.
func (e *Engine) Evictions() uint64 { return e.evictions.Load() }

// Entries returns how many records the cache holds: codes, tokens and
// family indexes, expired ones until they are purged.
func (e *Engine) Entries() int { return e.cache.Len() }

// Close releases the cache. Further calls fail with ErrUnavailable.
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	return e.cache.Close()
}

// hasher is bigcache's key hash and our stripe selector: maphash is fast,
// allocation-free and seeded per process, so keys cannot be chosen to
// collide.
type hasher struct{ seed maphash.Seed }

func (h hasher) Sum64(s string) uint64 {
	if v := maphash.String(h.seed, s); v != 0 {
		return v
	}
	// bigcache marks deleted entries with hash 0.
	return 1
}

// onRemove runs under a bigcache shard lock: it must not touch the cache.
func (e *Engine) onRemove(_ string, v []byte, reason bigcache.RemoveReason) {
	if reason != bigcache.NoSpace || len(v) < headerLen || expiresAt(v) <= time.Now().UnixMilli() {
		return
	}
	n := e.evictions.Add(1)
	now := time.Now().UnixNano()
	last := e.lastWarn.Load()
	if now-last < int64(warnEvery) || !e.lastWarn.CompareAndSwap(last, now) {
		return
	}
	e.logger.Load().Warn("token cache full: evicting live codes and tokens; raise max_memory",
		zap.Uint64("evicted_total", n),
		zap.Int("max_memory_mb", e.maxMemory))
}

func (e *Engine) keyLock(key string) *sync.Mutex {
	return &e.keyLocks[maphash.String(e.seed, key)>>56]
}

func (e *Engine) famLock(family string) *sync.Mutex {
	return &e.famLocks[maphash.String(e.seed, family)>>56]
}

// check reports a cancelled context or a closed engine.
func (e *Engine) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return stores.Unavailable(err)
	}
	if e.closed.Load() {
		return stores.Unavailable(errors.New("cache closed"))
	}
	return nil
}

// get returns the value under key, nil if absent.
func (e *Engine) get(key string) ([]byte, error) {
	v, err := e.cache.Get(key)
	if err != nil {
		if errors.Is(err, bigcache.ErrEntryNotFound) {
			return nil, nil
		}
		return nil, stores.Unavailable(err)
	}
	return v, nil
}

func (e *Engine) set(key string, v []byte) error {
	if err := e.cache.Set(key, v); err != nil {
		return stores.Unavailable(err)
	}
	return nil
}

func validKey(key string) error {
	if key == "" || strings.HasPrefix(key, familyPrefix) {
		return errors.New("invalid store key")
	}
	return nil
}

// InsertCode stores a new code.
func (e *Engine) InsertCode(ctx context.Context, c *stores.Code) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	if err := validKey(c.Key); err != nil {
		return err
	}
	v, err := encodeCode(c)
	if err != nil {
		return err
	}
	return e.set(c.Key, v)
}

// ConsumeCode marks the code used and returns it; see stores.CodeStore.
func (e *Engine) ConsumeCode(ctx context.Context, key string) (*stores.Code, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	v, err := e.consume(key, recCode)
	if err != nil && !errors.Is(err, stores.ErrConsumed) {
		return nil, err
	}
	c, ok := decodeCode(v, key)
	if !ok {
		return nil, stores.Unavailable(errors.New("corrupt code record"))
	}
	return c, err
}

// ConsumeRefreshToken marks the refresh token used and returns it; see
// stores.TokenStore.
func (e *Engine) ConsumeRefreshToken(ctx context.Context, key string) (*stores.Token, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	v, err := e.consume(key, recRefresh)
	if err != nil && !errors.Is(err, stores.ErrConsumed) {
		return nil, err
	}
	t, ok := decodeToken(v, key)
	if !ok {
		return nil, stores.Unavailable(errors.New("corrupt token record"))
	}
	return t, err
}

// consume flips the used flag of a live record of type typ under the key's
// stripe lock. The record stays, so a replay finds it and gets ErrConsumed.
func (e *Engine) consume(key string, typ byte) ([]byte, error) {
	mu := e.keyLock(key)
	mu.Lock()
	defer mu.Unlock()
	v, err := e.get(key)
	if err != nil {
		return nil, err
	}
	flags, exp, ok := header(v, typ)
	if !ok || exp <= time.Now().UnixMilli() {
		return nil, stores.ErrNotFound
	}
	if flags&flagUsed != 0 {
		return v, stores.ErrConsumed
	}
	v[offFlags] |= flagUsed
	if err := e.set(key, v); err != nil {
		return nil, err
	}
	return v, nil
}

// InsertTokens stores tokens and lists them in their family's index, under
// the family lock so that a concurrent RevokeFamily sees all or none.
func (e *Engine) InsertTokens(ctx context.Context, tokens ...*stores.Token) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	vals := make([][]byte, len(tokens))
	for i, t := range tokens {
		if err := validKey(t.Key); err != nil {
			return err
		}
		if t.Kind != stores.AccessToken && t.Kind != stores.RefreshToken {
			return fmt.Errorf("invalid token kind %d", t.Kind)
		}
		v, err := encodeToken(t)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	done := make([]bool, len(tokens))
	for i, t := range tokens {
		if done[i] {
			continue
		}
		if t.Family == "" {
			if err := e.set(t.Key, vals[i]); err != nil {
				return err
			}
			done[i] = true
			continue
		}
		// The tokens of this family in this call, usually an access token
		// and its refresh token.
		var group []int
		for j := i; j < len(tokens); j++ {
			if !done[j] && tokens[j].Family == t.Family {
				group = append(group, j)
				done[j] = true
			}
		}
		if err := e.insertFamily(t.Family, tokens, vals, group); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) insertFamily(family string, tokens []*stores.Token, vals [][]byte, group []int) error {
	mu := e.famLock(family)
	mu.Lock()
	defer mu.Unlock()
	ikey := familyPrefix + family
	old, err := e.get(ikey)
	if err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	var keys []string
	var exp int64
	if _, oexp, ok := header(old, recFamily); ok && oexp > now {
		// An index past its expiry lists only expired tokens: start afresh.
		keys, exp = members(old), oexp
	}
	if n := len(keys); n >= pruneFrom && n&(n-1) == 0 {
		keys = e.prune(keys, now)
	}
	for _, i := range group {
		keys = append(keys, tokens[i].Key)
		exp = max(exp, tokens[i].ExpiresAt.UnixMilli())
	}
	idx, err := encodeFamily(exp, keys)
	if err != nil {
		return err
	}
	for n, i := range group {
		if err := e.set(tokens[i].Key, vals[i]); err != nil {
			e.unset(tokens, group[:n])
			return err
		}
	}
	if err := e.set(ikey, idx); err != nil {
		// Tokens RevokeFamily could not find must not be issued.
		e.unset(tokens, group)
		return err
	}
	return nil
}

func (e *Engine) unset(tokens []*stores.Token, group []int) {
	for _, i := range group {
		_ = e.cache.Delete(tokens[i].Key)
	}
}

// prune drops index members that are gone or expired.
func (e *Engine) prune(keys []string, now int64) []string {
	kept := keys[:0]
	for _, k := range keys {
		v, err := e.get(k)
		if err != nil || len(v) < headerLen || (v[0] != recAccess && v[0] != recRefresh) || expiresAt(v) <= now {
			continue
		}
		kept = append(kept, k)
	}
	return kept
}

// LookupToken returns a live token of the given kind; see stores.TokenStore.
func (e *Engine) LookupToken(ctx context.Context, kind stores.Kind, key string) (*stores.Token, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	v, err := e.get(key)
	if err != nil {
		return nil, err
	}
	flags, exp, ok := header(v, recordType(kind))
	if !ok || flags&flagUsed != 0 || exp <= time.Now().UnixMilli() ||
		(kind != stores.AccessToken && kind != stores.RefreshToken) {
		return nil, stores.ErrNotFound
	}
	t, ok := decodeToken(v, key)
	if !ok {
		return nil, stores.Unavailable(errors.New("corrupt token record"))
	}
	return t, nil
}

// RevokeToken removes one token; an unknown one is no error (RFC 7009 §2.2).
func (e *Engine) RevokeToken(ctx context.Context, kind stores.Kind, key string) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	mu := e.keyLock(key)
	mu.Lock()
	defer mu.Unlock()
	v, err := e.get(key)
	if err != nil {
		return err
	}
	if _, _, ok := header(v, recordType(kind)); !ok {
		return nil
	}
	return e.del(key)
}

func (e *Engine) del(key string) error {
	if err := e.cache.Delete(key); err != nil && !errors.Is(err, bigcache.ErrEntryNotFound) {
		return stores.Unavailable(err)
	}
	return nil
}

// InProcess marks the engine as answering from memory (stores.InProcess).
func (e *Engine) InProcess() {}

// RevokeFamily removes every token listed in the family's index, consumed
// refresh tokens included, and the index.
func (e *Engine) RevokeFamily(ctx context.Context, family string, until time.Time) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	if family == "" {
		return nil
	}
	fmu := e.famLock(family)
	fmu.Lock()
	defer fmu.Unlock()
	ikey := familyPrefix + family
	v, err := e.get(ikey)
	if err != nil {
		return err
	}
	if _, _, ok := header(v, recFamily); !ok {
		return nil
	}
	for _, k := range members(v) {
		// The key lock orders this delete against a concurrent consume.
		mu := e.keyLock(k)
		mu.Lock()
		err := e.del(k)
		mu.Unlock()
		if err != nil {
			return err
		}
	}
	return e.del(ikey)
}

// PurgeExpiredCodes deletes expired codes, used or not, and returns how many.
func (e *Engine) PurgeExpiredCodes(ctx context.Context, batch int) (int64, error) {
	return e.purge(ctx, batch, true)
}

// PurgeExpiredTokens deletes expired access and refresh tokens, used or not,
// and returns how many; expired family indexes go too, uncounted.
func (e *Engine) PurgeExpiredTokens(ctx context.Context, batch int) (int64, error) {
	return e.purge(ctx, batch, false)
}

// purge walks the whole cache once, deleting expired records of the
// wanted kinds batch at a time and checking ctx between batches.
func (e *Engine) purge(ctx context.Context, batch int, codes bool) (int64, error) {
	if err := e.check(ctx); err != nil {
		return 0, err
	}
	if batch <= 0 {
		batch = 1000
	}
	var (
		n       int64
		pending = make([]string, 0, min(batch, 4096))
		now     = time.Now().UnixMilli()
	)
	flush := func() error {
		for _, k := range pending {
			if strings.HasPrefix(k, familyPrefix) {
				if err := e.purgeFamily(k, now); err != nil {
					return err
				}
				continue
			}
			// Nothing revives an expired code or token, so no lock: a
			// concurrent revoke just makes this delete miss.
			err := e.cache.Delete(k)
			switch {
			case err == nil:
				n++
			case !errors.Is(err, bigcache.ErrEntryNotFound):
				return stores.Unavailable(err)
			}
		}
		pending = pending[:0]
		return nil
	}
	it := e.cache.Iterator()
	for it.SetNext() {
		info, err := it.Value()
		if err != nil {
			continue // the entry went away during the walk
		}
		v := info.Value()
		if len(v) < headerLen || expiresAt(v) > now {
			continue
		}
		switch v[0] {
		case recCode:
			if !codes {
				continue
			}
		case recAccess, recRefresh, recFamily:
			if codes {
				continue
			}
		default:
			continue
		}
		pending = append(pending, info.Key())
		if len(pending) >= batch {
			if err := flush(); err != nil {
				return n, err
			}
			if err := e.check(ctx); err != nil {
				return n, err
			}
		}
	}
	return n, flush()
}

// purgeFamily deletes an expired family index unless an insert has just
// extended it.
func (e *Engine) purgeFamily(ikey string, now int64) error {
	mu := e.famLock(strings.TrimPrefix(ikey, familyPrefix))
	mu.Lock()
	defer mu.Unlock()
	v, err := e.get(ikey)
	if err != nil {
		return err
	}
	if _, exp, ok := header(v, recFamily); ok && exp <= now {
		return e.del(ikey)
	}
	return nil
}

// Interface guards
var _ stores.Store = (*Engine)(nil)
