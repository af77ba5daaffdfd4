package stores_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/cache"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

func TestGateHoldsCallsUntilOpen(t *testing.T) {
	inner, err := cache.New(cache.Config{MaxMemoryMB: 8, Shards: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	g := stores.NewGate(inner)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := g.LookupToken(ctx, stores.AccessToken, "k"); !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("call through a closed gate: %v, want ErrUnavailable at the deadline", err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := g.LookupToken(context.Background(), stores.AccessToken, "k")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("call passed a closed gate: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.Open()
	g.Open()
	select {
	case err := <-done:
		if !errors.Is(err, stores.ErrNotFound) {
			t.Fatalf("call after Open: %v, want the store's ErrNotFound", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Open did not release the waiting call")
	}
}

// gated is a store behind a gate, with the capabilities the gate does not
// forward taken from the store itself.
type gated struct {
	*stores.Gate
	stores.ClientRegistry
	stores.KeyStore
}

// The contract holds through an open gate, single-use values included.
func TestGateContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) stores.Store {
		inner, err := cache.New(cache.Config{MaxMemoryMB: 64, Shards: 64})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = inner.Close() })
		g := stores.NewGate(inner)
		g.Open()
		return gated{g, inner, inner}
	}, storetest.Options{})
}

// bareStore has none of the optional capabilities.
type bareStore struct{ stores.Store }

func TestGateSingleUse(t *testing.T) {
	inner, err := cache.New(cache.Config{MaxMemoryMB: 8, Shards: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	if _, ok := stores.SingleUseOf(stores.NewGate(bareStore{inner})); ok {
		t.Fatal("a gate over a store without single-use values offers them")
	}
	g := stores.NewGate(inner)
	su, ok := stores.SingleUseOf(g)
	if !ok {
		t.Fatal("a gate over the cache store offers no single-use values")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := su.PutOnce(ctx, "k", []byte("v"), time.Now().Add(time.Minute)); !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("PutOnce through a closed gate: %v, want ErrUnavailable at the deadline", err)
	}
	g.Open()
	if err := su.PutOnce(context.Background(), "k", []byte("v"), time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("PutOnce through an open gate: %v", err)
	}
	if v, err := su.TakeOnce(context.Background(), "k"); err != nil || string(v) != "v" {
		t.Fatalf("TakeOnce through the gate = %q, %v", v, err)
	}
}
