package sql

import (
	"strings"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// feedPrefix keeps the feed tests' tables apart from other tests' on the
// shared servers.
const feedPrefix = "feedtest_"

func TestFeedContract(t *testing.T) {
	run := func(t *testing.T, dialect, dsn string) {
		first := newEngine(t, dialect, dsn, Options{TablePrefix: feedPrefix})
		storetest.RunFeed(t, func(t *testing.T) stores.RevocationFeed {
			e, err := NewEngine(first.db, dialect, Options{TablePrefix: feedPrefix, CreateSchema: true})
			if err != nil {
				t.Fatal(err)
			}
			return e
		})
	}
	t.Run("sqlite", func(t *testing.T) { run(t, "sqlite", sqliteDSN(t)) })
	for _, sd := range serverDialects {
		t.Run(sd.dialect, func(t *testing.T) { run(t, sd.dialect, serverDSN(t, sd.dialect, sd.env)) })
	}
}

// TestFeedAddedToOldSchema: a schema applied before the feed existed gets
// the feed table from create_schema, and without it a clear error.
func TestFeedAddedToOldSchema(t *testing.T) {
	e := newEngine(t, "sqlite", sqliteDSN(t), Options{})
	ctx := testCtx(t, time.Minute)
	if _, err := e.db.ExecContext(ctx, "DROP TABLE oauth_revocations"); err != nil {
		t.Fatal(err)
	}
	plain, _ := NewEngine(e.db, "sqlite", Options{})
	err := plain.StartFeed(ctx)
	if err == nil || !strings.Contains(err.Error(), "oauth_revocations") || !strings.Contains(err.Error(), "create_schema") {
		t.Fatalf("StartFeed without the table: %v, want an error naming the table and create_schema", err)
	}
	if err := e.StartFeed(ctx); err != nil {
		t.Fatalf("StartFeed with create_schema: %v", err)
	}
	if err := plain.StartFeed(ctx); err != nil {
		t.Fatalf("StartFeed after creation: %v", err)
	}
}
