//go:build db2

package sql

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// TestDB2DriverLinked runs only in a -tags db2 build: IBM's CLI driver is
// linked and loads, and an unreachable server is an outage within the
// deadline.
func TestDB2DriverLinked(t *testing.T) {
	if err := dialects["db2"].available(); err != nil {
		t.Fatal(err)
	}
	db, err := Open("db2", "HOSTNAME=127.0.0.1;PORT=1;DATABASE=oauth2;UID=u;PWD=p;PROTOCOL=TCPIP")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e, err := NewEngine(db, "db2", Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	began := time.Now()
	_, err = e.LookupToken(ctx, stores.AccessToken, storetest.Key())
	if !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("lookup against a closed port: %v", err)
	}
	took := time.Since(began)
	if took > 3*time.Second {
		t.Fatalf("took %v, past the 2s deadline", took)
	}
	t.Logf("closed port: %v after %v", err, took.Round(time.Millisecond))
}
