package stores_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/cache"
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
