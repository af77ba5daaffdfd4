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
	"unsafe"

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
	// Logger receives the warnings when the cache is full: live records
	// kept in the overflow, new codes and tokens refused. Nil logs nothing.
	Logger *zap.Logger
}

// Engine is an in-process stores.Store on bigcache. It holds no goroutine:
// expired records stay (and behave as absent) until PurgeExpired* removes
// them. When bigcache is full it drops its oldest entries; the live ones
// among them move to the overflow (see overflow), and while the overflow is
// over its budget new codes and tokens are refused with ErrUnavailable.
type Engine struct {
	cache *bigcache.BigCache
	seed  maphash.Seed

	// Consumes are get-check-set, which bigcache cannot do atomically:
	// keyLocks serialise them per key (stripe), and famLocks serialise
	// updates of a family index against RevokeFamily. Lock order: family,
	// then key.
	keyLocks [256]sync.Mutex
	famLocks [256]sync.Mutex

	over   overflow
	budget int64 // overflow bytes beyond which issuance is refused
	tab    interned

	compactMu    sync.Mutex
	compactAfter time.Time // under compactMu

	logger        atomic.Pointer[zap.Logger]
	rescued       atomic.Uint64
	refusals      atomic.Uint64
	lastRescueLog atomic.Int64
	lastRefuseLog atomic.Int64
	maxMemory     int
	closed        atomic.Bool

	// Generated JWT signing keys, see keys.go.
	keysMu sync.Mutex
	sk     signingKeys

	// Registered clients, see clients.go.
	clientsMu sync.RWMutex
	reg       registry
}

// warnEvery rate-limits the warnings of a full cache.
const warnEvery = time.Minute

// compactEvery is how long a refused insert waits to compact again after a
// compaction that freed little: in a cache really full of live records it
// only turns them over.
const compactEvery = time.Second

// minBudget is the least overflow budget, for the smallest caches.
const minBudget = 64 << 10

// errFull is what a refused insert or redemption wraps.
var errFull = errors.New("token cache full of live codes and tokens; raise max_memory")

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
	e := &Engine{
		seed:      maphash.MakeSeed(),
		maxMemory: cfg.MaxMemoryMB,
		budget:    max(int64(cfg.MaxMemoryMB)<<20/8, minBudget),
	}
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

// Rescued returns how many live records bigcache evicted for lack of space
// and the engine kept in its overflow instead of losing them.
func (e *Engine) Rescued() uint64 { return e.rescued.Load() }

// Refusals returns how many new codes, tokens and redemptions were refused
// (ErrUnavailable) because the cache was full of live records.
func (e *Engine) Refusals() uint64 { return e.refusals.Load() }

// OverflowBytes returns the approximate memory the overflow holds, and
// OverflowBudget the amount beyond which issuance is refused.
func (e *Engine) OverflowBytes() int64 { return e.over.size.Load() }

// OverflowBudget returns the overflow size beyond which issuance is refused.
func (e *Engine) OverflowBudget() int64 { return e.budget }

// Entries returns how many records the cache holds, its overflow included:
// codes, tokens, family indexes and markers, expired ones until purged.
func (e *Engine) Entries() int { return e.cache.Len() + int(e.over.n.Load()) }

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
// A live record evicted for lack of space moves to the overflow; only
// expired ones are let go.
func (e *Engine) onRemove(key string, v []byte, reason bigcache.RemoveReason) {
	if reason != bigcache.NoSpace || len(v) < headerLen || expiresAt(v) <= time.Now().UnixMilli() {
		return
	}
	e.over.rescue(key, v)
	n := e.rescued.Add(1)
	if e.mayWarn(&e.lastRescueLog) {
		e.logger.Load().Warn("token cache full: keeping evicted live records in overflow memory; raise max_memory",
			zap.Uint64("rescued_total", n),
			zap.Int64("overflow_bytes", e.over.size.Load()),
			zap.Int64("overflow_budget", e.budget),
			zap.Int("max_memory_mb", e.maxMemory))
	}
}

// mayWarn rate-limits a warning to one per warnEvery.
func (e *Engine) mayWarn(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	l := last.Load()
	return now-l >= int64(warnEvery) && last.CompareAndSwap(l, now)
}

// admit refuses new live state while the overflow is over its budget: the
// token endpoint answers 503 rather than anything live being dropped. With
// compact, it first tries to make room by moving overflow records back
// into bigcache (see compact); after a compaction that freed little it
// waits compactEvery before trying again. Callers that hold a key or family
// lock pass false.
func (e *Engine) admit(compact bool) error {
	if e.over.size.Load() <= e.budget {
		return nil
	}
	if compact && e.compactMu.TryLock() {
		if time.Now().After(e.compactAfter) {
			before := e.over.size.Load()
			e.compact(e.budget)
			if freed := before - e.over.size.Load(); freed < e.budget/4 {
				// Shards full of live records: compaction only turns them over.
				e.compactAfter = time.Now().Add(compactEvery)
			}
		}
		e.compactMu.Unlock()
		if e.over.size.Load() <= e.budget {
			return nil
		}
	}
	n := e.refusals.Add(1)
	if e.mayWarn(&e.lastRefuseLog) {
		e.logger.Load().Warn("token cache full: refusing to issue codes and tokens; raise max_memory",
			zap.Uint64("refused_total", n),
			zap.Int64("overflow_bytes", e.over.size.Load()),
			zap.Int64("overflow_budget", e.budget),
			zap.Int("max_memory_mb", e.maxMemory))
	}
	return stores.Unavailable(errFull)
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

// get returns a private copy of the value under key, nil if absent. A
// bigcache hit costs nothing more; a miss looks in the overflow only when
// it holds anything.
func (e *Engine) get(key string) ([]byte, error) {
	v, err := e.cache.Get(key)
	if err != nil {
		if errors.Is(err, bigcache.ErrEntryNotFound) {
			v, _, _ := e.over.get(key)
			return v, nil
		}
		return nil, stores.Unavailable(err)
	}
	return v, nil
}

// set writes key, and then drops the overflow copy it replaces. A copy
// rescued after the write is the new value and stays; one rescued between
// reading its generation and the write is an older value that reads never
// see while bigcache holds the key, and that expires no later than it.
// Callers hold the key's lock (or own a fresh key).
func (e *Engine) set(key string, v []byte) error {
	gen := e.over.generation(key)
	if err := e.cache.Set(key, v); err != nil {
		return stores.Unavailable(err)
	}
	if gen != 0 {
		e.over.remove(key, gen)
	}
	return nil
}

// del deletes key from bigcache and then from the overflow: once bigcache
// no longer holds it, no eviction can rescue it again.
func (e *Engine) del(key string) error {
	if err := e.cache.Delete(key); err != nil && !errors.Is(err, bigcache.ErrEntryNotFound) {
		return stores.Unavailable(err)
	}
	e.over.remove(key, 0)
	return nil
}

func validKey(key string) error {
	// Internal keys start with a zero byte (see internalKey).
	if key == "" || key[0] == 0 || strings.HasPrefix(key, familyPrefix) || strings.HasPrefix(key, revokedPrefix) ||
		strings.HasPrefix(key, oncePrefix) {
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
	v, err := encodeCode(c, &e.tab)
	if err != nil {
		return err
	}
	if err := e.admit(true); err != nil {
		return err
	}
	return e.set(internalKey(c.Key), v)
}

// ConsumeCode marks the code used and returns it; see stores.CodeStore.
func (e *Engine) ConsumeCode(ctx context.Context, key string) (*stores.Code, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	v, err := e.consume(internalKey(key), recCode)
	if err != nil && !errors.Is(err, stores.ErrConsumed) {
		return nil, err
	}
	c, ok := decodeCode(v, key, &e.tab)
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
	v, err := e.consume(internalKey(key), recRefresh)
	if err != nil && !errors.Is(err, stores.ErrConsumed) {
		return nil, err
	}
	t, ok := decodeToken(v, key, &e.tab)
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
	// A redemption leads to issuance: refuse it before the code or refresh
	// token is spent, so that the client can retry once there is room.
	if err := e.admit(false); err != nil {
		return nil, err
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
	keys := make([]string, len(tokens))
	for i, t := range tokens {
		if err := validKey(t.Key); err != nil {
			return err
		}
		if t.Kind != stores.AccessToken && t.Kind != stores.RefreshToken {
			return fmt.Errorf("invalid token kind %d", t.Kind)
		}
		v, err := encodeToken(t, &e.tab)
		if err != nil {
			return err
		}
		vals[i], keys[i] = v, internalKey(t.Key)
	}
	if err := e.admit(true); err != nil {
		return err
	}
	done := make([]bool, len(tokens))
	for i, t := range tokens {
		if done[i] {
			continue
		}
		if t.Family == "" {
			if err := e.set(keys[i], vals[i]); err != nil {
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
		if err := e.insertFamily(t.Family, tokens, keys, vals, group); err != nil {
			return err
		}
	}
	return nil
}

// insertFamily stores the tokens of group, under their internal keys, and
// lists them in their family's index.
func (e *Engine) insertFamily(family string, tokens []*stores.Token, ikeys []string, vals [][]byte, group []int) error {
	mu := e.famLock(family)
	mu.Lock()
	defer mu.Unlock()
	now := time.Now().UnixMilli()
	// Under the family lock, RevokeFamily has either written its marker,
	// which refuses this insert, or not begun, and then finds these tokens
	// in the index.
	if marked, err := e.revoked(family, now); err != nil {
		return err
	} else if marked {
		return stores.ErrRevoked
	}
	ikey := familyPrefix + family
	old, err := e.get(ikey)
	if err != nil {
		return err
	}
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
		keys = append(keys, ikeys[i])
		exp = max(exp, tokens[i].ExpiresAt.UnixMilli())
	}
	idx, err := encodeFamily(exp, keys)
	if err != nil {
		return err
	}
	for n, i := range group {
		if err := e.set(ikeys[i], vals[i]); err != nil {
			e.unset(ikeys, group[:n])
			return err
		}
	}
	if err := e.set(ikey, idx); err != nil {
		// Tokens RevokeFamily could not find must not be issued.
		e.unset(ikeys, group)
		return err
	}
	return nil
}

func (e *Engine) unset(ikeys []string, group []int) {
	for _, i := range group {
		mu := e.keyLock(ikeys[i])
		mu.Lock()
		_ = e.del(ikeys[i])
		mu.Unlock()
	}
}

// compact moves live overflow records back into bigcache, up to limit
// bytes of them, oldest rescue first. bigcache's shards are FIFO rings: a
// live record reaches the head and is evicted (rescued) even while the ring
// behind it is mostly deleted or expired records. Writing it again puts it
// at the tail and frees the head, so the dead space is reclaimed and the
// overflow shrinks; in a shard really full of live records the write only
// rescues another one, and the overflow stays as large. Each record is
// moved under its own key or family lock, so no writer races the move, and
// a copy rescued again meanwhile (a new generation) is kept.
func (e *Engine) compact(limit int64) {
	now := time.Now().UnixMilli()
	var done int64
	for _, x := range e.over.oldest(limit) {
		var mu *sync.Mutex
		switch {
		case strings.HasPrefix(x.key, familyPrefix):
			mu = e.famLock(strings.TrimPrefix(x.key, familyPrefix))
		case strings.HasPrefix(x.key, revokedPrefix):
			mu = e.famLock(strings.TrimPrefix(x.key, revokedPrefix))
		default:
			mu = e.keyLock(x.key)
		}
		mu.Lock()
		v, gen, ok := e.over.get(x.key)
		if ok && gen == x.gen && len(v) >= headerLen && expiresAt(v) > now {
			if _, err := e.cache.Get(x.key); err == nil {
				e.over.remove(x.key, gen) // bigcache holds a newer value
			} else if e.cache.Set(x.key, v) == nil {
				e.over.remove(x.key, gen)
			}
			done += entrySize(x.key, v)
		}
		mu.Unlock()
		if done >= limit {
			return
		}
	}
}

// revoked reports whether family has a live revoked-family marker.
func (e *Engine) revoked(family string, now int64) (bool, error) {
	v, err := e.get(revokedPrefix + family)
	if err != nil {
		return false, err
	}
	_, exp, ok := header(v, recRevoked)
	return ok && exp > now, nil
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
	// The guard's hot path: the internal key goes in a pooled buffer, so
	// that the lookup allocates only bigcache's copy and the token.
	buf := keyBufs.Get().(*[internalKeyLen]byte)
	ikey := key
	if compactKey(buf, key) {
		ikey = unsafe.String(&buf[0], internalKeyLen)
	}
	v, err := e.get(ikey)
	keyBufs.Put(buf)
	if err != nil {
		return nil, err
	}
	flags, exp, ok := header(v, recordType(kind))
	if !ok || flags&flagUsed != 0 || exp <= time.Now().UnixMilli() ||
		(kind != stores.AccessToken && kind != stores.RefreshToken) {
		return nil, stores.ErrNotFound
	}
	t, ok := decodeToken(v, key, &e.tab)
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
	key = internalKey(key)
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

// InProcess marks the engine as answering from memory (stores.InProcess).
func (e *Engine) InProcess() {}

// RevokeFamily marks the family revoked until the given time (or a later
// time an earlier call set), then removes every token listed in the
// family's index, consumed refresh tokens included, and the index. The
// marker is written even when the cache is full: it is never refused, and
// never lost while it lives (see overflow).
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
	mkey := revokedPrefix + family
	old, err := e.get(mkey)
	if err != nil {
		return err
	}
	exp := until.UnixMilli()
	if _, oexp, ok := header(old, recRevoked); ok && oexp > exp {
		exp = oexp
	}
	if exp > time.Now().UnixMilli() {
		if err := e.set(mkey, encodeRevoked(exp)); err != nil {
			return err
		}
	}
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
	return e.purge(ctx, batch, purgeCodes)
}

// PurgeExpiredTokens deletes expired access and refresh tokens, used or not,
// and returns how many; expired family indexes, revoked-family markers and
// lapsed registered clients go too, uncounted.
func (e *Engine) PurgeExpiredTokens(ctx context.Context, batch int) (int64, error) {
	if e.check(ctx) == nil {
		e.purgeClients()
	}
	return e.purge(ctx, batch, purgeTokens)
}

// What a purge walk deletes.
const (
	purgeCodes = iota
	purgeTokens
	purgeOnce
)

// wanted reports whether a record of type typ is purged by a walk of kind
// what.
func wanted(typ byte, what int) bool {
	switch typ {
	case recCode:
		return what == purgeCodes
	case recAccess, recRefresh, recFamily, recRevoked:
		return what == purgeTokens
	case recOnce:
		return what == purgeOnce
	}
	return false
}

// purge expires the overflow first, then walks the whole cache once,
// deleting expired records of the wanted kinds batch at a time and checking
// ctx between batches.
func (e *Engine) purge(ctx context.Context, batch int, what int) (int64, error) {
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
	for _, x := range e.over.expired(now) {
		if !wanted(x.typ, what) {
			continue
		}
		if x.typ == recFamily || x.typ == recRevoked {
			if err := e.purgeFamily(x.key, now); err != nil {
				return n, err
			}
			continue
		}
		if x.typ == recOnce {
			if e.purgeOnceOverflow(x, now) {
				n++
			}
			continue
		}
		// Count it here unless bigcache holds the key too (this copy is an
		// older one): the walk below counts that.
		_, err := e.cache.Get(x.key)
		if e.over.remove(x.key, x.gen) && errors.Is(err, bigcache.ErrEntryNotFound) {
			n++
		}
	}
	flush := func() error {
		for _, k := range pending {
			if strings.HasPrefix(k, familyPrefix) || strings.HasPrefix(k, revokedPrefix) {
				if err := e.purgeFamily(k, now); err != nil {
					return err
				}
				continue
			}
			if strings.HasPrefix(k, oncePrefix) {
				gone, err := e.purgeOnce(k, now)
				if err != nil {
					return err
				}
				if gone {
					n++
				}
				continue
			}
			// Nothing revives an expired code or token, so no lock: a
			// concurrent revoke just makes this delete miss.
			err := e.cache.Delete(k)
			switch {
			case err == nil:
				n++
				e.over.remove(k, 0)
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
		if len(v) < headerLen || expiresAt(v) > now || !wanted(v[0], what) {
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
	if err := flush(); err != nil {
		return n, err
	}
	// With the expired records gone, the overflow's live ones can usually
	// go back into bigcache.
	if size := e.over.size.Load(); size > 0 {
		e.compactMu.Lock()
		e.compact(size)
		e.compactAfter = time.Time{}
		e.compactMu.Unlock()
	}
	return n, nil
}

// purgeFamily deletes an expired family index or revoked-family marker
// unless an insert or a revocation has just extended it.
func (e *Engine) purgeFamily(key string, now int64) error {
	typ, family := recFamily, strings.TrimPrefix(key, familyPrefix)
	if strings.HasPrefix(key, revokedPrefix) {
		typ, family = recRevoked, strings.TrimPrefix(key, revokedPrefix)
	}
	mu := e.famLock(family)
	mu.Lock()
	defer mu.Unlock()
	v, err := e.get(key)
	if err != nil {
		return err
	}
	if _, exp, ok := header(v, typ); ok && exp <= now {
		return e.del(key)
	}
	return nil
}

// Interface guards
var (
	_ stores.Store     = (*Engine)(nil)
	_ stores.SingleUse = (*Engine)(nil)
)
