package oauth2

// Issue 16 item 6: a revocation is never lost in the feed. The feed table
// refuses inserts only (a trigger), as a full disk, a lost grant or a
// broken replica might; reads keep working, so no gateway notices by
// reading. Three gateways share one store (see fleet_test.go).

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFleetFeedWriteFailureSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f := startFleet(t, fmt.Sprintf("sql {\n\t\tdialect sqlite\n\t\tdsn %q\n\t\tcreate_schema\n\t}", path), fleetCache)
	runFeedWriteFailure(t, f,
		func() error {
			_, err := db.Exec(`CREATE TRIGGER refuse_feed BEFORE INSERT ON oauth_revocations BEGIN SELECT RAISE(ABORT, 'the feed refuses writes'); END`)
			return err
		},
		func() error { _, err := db.Exec(`DROP TRIGGER refuse_feed`); return err })
}

func TestFleetFeedWriteFailurePostgres(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set OAUTH2_TEST_POSTGRES_DSN to run three gateways on PostgreSQL (scripts/services.sh env prints it)")
	}
	const prefix = "fleetw_"
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dropPrefixed(t, db, "pgx", prefix)
	f := startFleet(t, fmt.Sprintf("sql {\n\t\tdialect postgres\n\t\tdsn %q\n\t\ttable_prefix %s\n\t\tcreate_schema\n\t}", dsn, prefix), fleetCache)
	runFeedWriteFailure(t, f,
		func() error {
			_, err := db.Exec(`CREATE OR REPLACE FUNCTION ` + prefix + `refuse_feed() RETURNS trigger LANGUAGE plpgsql AS
				$$ BEGIN RAISE EXCEPTION 'the feed refuses writes'; END $$`)
			if err == nil {
				_, err = db.Exec(`CREATE TRIGGER refuse_feed BEFORE INSERT ON ` + prefix + `revocations FOR EACH ROW EXECUTE FUNCTION ` + prefix + `refuse_feed()`)
			}
			return err
		},
		func() error {
			_, err := db.Exec(`DROP TRIGGER refuse_feed ON ` + prefix + `revocations`)
			return err
		})
}

// runFeedWriteFailure checks, with refuse making the feed refuse inserts
// and allow undoing it: a revocation answered 503 is made nowhere; a
// family revocation set off by a replay is made at once and reaches the
// other gateways' caches once the feed takes writes again; a revocation
// then reaches them within the feed's bound.
func runFeedWriteFailure(t *testing.T, f *fleet, refuse, allow func() error) {
	a, b, c := f.gws[0], f.gws[1], f.gws[2]
	cached := func(tok string) {
		t.Helper()
		for _, g := range []*gateway{b, b} { // the second answers from B's cache
			if st := f.guard(g, tok); st != 200 {
				t.Fatalf("fresh token on %s: %d", g.name, st)
			}
		}
	}
	waitRefused := func(g *gateway, tok, what string, limit time.Duration) {
		t.Helper()
		start := time.Now()
		for f.guard(g, tok) != 401 {
			if time.Since(start) > limit {
				t.Fatalf("%s: gateway %s still accepts the token after %v", what, g.name, limit)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s: refused on %s after %v", what, g.name, time.Since(start).Round(time.Millisecond))
	}

	tok, st := f.clientToken(a)
	if tok == "" {
		t.Fatalf("client_credentials: %d", st)
	}
	cached(tok)
	code, st := f.code(a)
	if code == "" {
		t.Fatalf("authorize: %d", st)
	}
	st, _, rt1 := f.redeem(a, code)
	if st != 200 {
		t.Fatalf("redeem: %d", st)
	}
	st, at2, _ := f.refresh(b, rt1)
	if st != 200 {
		t.Fatalf("refresh: %d", st)
	}
	cached(at2)

	if err := refuse(); err != nil {
		t.Fatal(err)
	}
	allowed := false
	defer func() {
		if !allowed {
			_ = allow()
		}
	}()

	// A revocation the other gateways cannot be told of answers 503 and
	// is made nowhere: the token is alive on A as on B, not dead on A
	// and alive in B's cache for the rest of validation_cache.
	if st := f.revoke(a, tok); st != 503 {
		t.Fatalf("revoke with the feed refusing writes: %d, want 503", st)
	}
	time.Sleep(1500 * time.Millisecond)
	if sa, sb := f.guard(a, tok), f.guard(b, tok); sa != sb {
		t.Fatalf("after a revocation answered 503, A answers %d and B %d: the store revoked what the feed never said", sa, sb)
	}

	// A refresh replay on C revokes the family at once: the store refuses
	// its tokens on A and C, and the event waits on C.
	if st, _, _ := f.refresh(c, rt1); st != 400 {
		t.Fatalf("replay on C: %d, want 400", st)
	}
	for _, g := range []*gateway{a, c} {
		if st := f.guard(g, at2); st != 401 {
			t.Fatalf("a token of the replayed family on %s: %d, want 401", g.name, st)
		}
	}
	if !strings.Contains(c.proc.log.String(), "revocation feed refuses writes") {
		t.Error("C's log does not say the feed refuses writes")
	}

	// Once the feed takes writes, the waiting event reaches B's cache
	// within an interval to publish it and the usual bound.
	if err := allow(); err != nil {
		t.Fatal(err)
	}
	allowed = true
	waitRefused(b, at2, "the family revoked by the replay", 2*propagationLimit)

	// And revocations work as before.
	if st := f.revoke(a, tok); st != 200 {
		t.Fatalf("revoke once the feed takes writes: %d", st)
	}
	waitRefused(b, tok, "the revoked token", propagationLimit)
}
