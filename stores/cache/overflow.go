package cache

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
)

// overflow holds the live records bigcache evicted for lack of space.
//
// bigcache makes room by dropping the oldest entries of a full shard,
// whatever they are. A dropped family index would make RevokeFamily miss
// live tokens, a dropped consumed record would let a code be redeemed
// twice, a dropped marker would let a revoked family be reissued: none of
// that may happen silently. So the engine's OnRemoveWithReason callback,
// which bigcache calls under the shard lock with a copy of the evicted
// entry, moves every live one here. Every read falls back to this map on a
// bigcache miss, and the engine refuses new codes and tokens while it holds
// more than its budget, so memory stays bounded by max_memory plus that
// budget and nothing live is lost.
//
// The callback runs under a bigcache shard lock: nothing holding mu may
// call into bigcache.
type overflow struct {
	mu      sync.Mutex
	entries map[string]overflowEntry
	gen     uint64 // of the last rescue, under mu
	// n and size mirror len(entries) and their bytes for lock-free reads:
	// a bigcache hit never looks here, a miss does only when n > 0.
	n    atomic.Int64
	size atomic.Int64
}

// overflowEntry is one rescued record. gen tells a later rescue of the same
// key from the copy a writer saw, so that the writer removes only the copy
// it replaced.
type overflowEntry struct {
	v   []byte
	gen uint64
}

// entryOverhead approximates the map's own bytes per entry.
const entryOverhead = 64

func entrySize(key string, v []byte) int64 { return int64(len(key) + len(v) + entryOverhead) }

// rescue keeps a record bigcache evicted; v is bigcache's private copy.
func (o *overflow) rescue(key string, v []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.entries == nil {
		o.entries = make(map[string]overflowEntry)
	}
	if old, ok := o.entries[key]; ok {
		o.size.Add(-entrySize(key, old.v))
	}
	o.gen++
	o.entries[key] = overflowEntry{v: v, gen: o.gen}
	o.size.Add(entrySize(key, v))
	o.n.Store(int64(len(o.entries)))
}

// get returns a private copy of the record under key and its generation.
func (o *overflow) get(key string) (v []byte, gen uint64, ok bool) {
	if o.n.Load() == 0 {
		return nil, 0, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ent, ok := o.entries[key]
	if !ok {
		return nil, 0, false
	}
	return append([]byte(nil), ent.v...), ent.gen, true
}

// generation returns the generation of key's copy, 0 if there is none.
func (o *overflow) generation(key string) uint64 {
	if o.n.Load() == 0 {
		return 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.entries[key].gen
}

// remove deletes key's copy if its generation is gen, or whatever it is
// when gen is 0, and reports whether it deleted one.
func (o *overflow) remove(key string, gen uint64) bool {
	if o.n.Load() == 0 {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ent, ok := o.entries[key]
	if !ok || (gen != 0 && ent.gen != gen) {
		return false
	}
	delete(o.entries, key)
	o.size.Add(-entrySize(key, ent.v))
	o.n.Store(int64(len(o.entries)))
	return true
}

// expired lists the keys, types and generations of records expired at now.
func (o *overflow) expired(now int64) []overflowRef {
	if o.n.Load() == 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []overflowRef
	for k, ent := range o.entries {
		if len(ent.v) < headerLen || expiresAt(ent.v) <= now {
			typ := byte(0)
			if len(ent.v) > 0 {
				typ = ent.v[0]
			}
			out = append(out, overflowRef{key: k, typ: typ, gen: ent.gen})
		}
	}
	return out
}

// oldest lists the keys and generations of the records rescued first,
// about limit bytes of them.
func (o *overflow) oldest(limit int64) []overflowRef {
	if o.n.Load() == 0 {
		return nil
	}
	o.mu.Lock()
	out := make([]overflowRef, 0, len(o.entries))
	for k, ent := range o.entries {
		out = append(out, overflowRef{key: k, gen: ent.gen, size: entrySize(k, ent.v)})
	}
	o.mu.Unlock()
	slices.SortFunc(out, func(a, b overflowRef) int { return cmp.Compare(a.gen, b.gen) })
	var n int64
	for i, x := range out {
		if n += x.size; n >= limit {
			return out[:i+1]
		}
	}
	return out
}

type overflowRef struct {
	size int64
	key  string
	typ  byte
	gen  uint64
}
