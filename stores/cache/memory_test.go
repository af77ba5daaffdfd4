package cache

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// BenchmarkLiveBytesPerToken fills an engine sized as bench/run.sh's memory
// scenario (1 GiB, 256 shards) with client_credentials access tokens, as the
// token endpoint issues them, and reports the Go heap they keep alive per
// token after a collection: the cache's own cost, without the garbage of
// the requests that issued them that RSS also holds (with GOGC=100 the heap
// grows to twice the live heap between collections). Run it with
// -benchtime 1x.
func BenchmarkLiveBytesPerToken(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for range b.N {
				live, queue := liveBytesPerToken(b, n)
				b.ReportMetric(live, "B/token")
				b.ReportMetric(queue, "queue-B/token")
			}
		})
	}
}

// liveBytesPerToken returns the live heap per token, and the part of it
// that is bigcache's ring buffers (the rest is mostly its index maps).
func liveBytesPerToken(b *testing.B, n int) (live, queue float64) {
	ctx := context.Background()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = storetest.Key()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e, err := New(Config{MaxMemoryMB: 1024, Shards: 256})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	now := time.Now()
	for _, k := range keys {
		t := &stores.Token{Key: k, Kind: stores.AccessToken, ClientID: "bench", Scope: "read",
			IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := e.InsertTokens(ctx, t); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := e.Entries(); got != n {
		b.Fatalf("%d entries, want %d", got, n)
	}
	runtime.KeepAlive(keys)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n), float64(e.cache.Capacity()) / float64(n)
}
