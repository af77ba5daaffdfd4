package sql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/purge"
	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// serverDialects are the dialects tested against a real server when the
// named variable holds its DSN.
var serverDialects = []struct{ dialect, env string }{
	{"mysql", "OAUTH2_TEST_MYSQL_DSN"},
	{"postgres", "OAUTH2_TEST_POSTGRES_DSN"},
	{"sqlserver", "OAUTH2_TEST_SQLSERVER_DSN"},
	{"oracle", "OAUTH2_TEST_ORACLE_DSN"},
	{"db2", "OAUTH2_TEST_DB2_DSN"},
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newEngine opens and starts an engine with create_schema.
func newEngine(t *testing.T, dialect, dsn string, opts Options) *Engine {
	t.Helper()
	db, err := Open(dialect, dsn)
	if err != nil {
		t.Fatalf("Open(%s): %v", dialect, err)
	}
	t.Cleanup(func() { db.Close() })
	opts.CreateSchema = true
	e, err := NewEngine(db, dialect, opts)
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	if err := e.Start(testCtx(t, time.Minute)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return e
}

// sqliteDSN returns a DSN for a fresh database file.
func sqliteDSN(t *testing.T) string {
	return filepath.Join(t.TempDir(), "oauth2.db")
}

// serverDSN returns the DSN in env, or skips the test.
func serverDSN(t *testing.T, dialect, env string) string {
	t.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		t.Skipf("set %s to run the %s tests against a real server", env, dialect)
	}
	if dialect == "db2" {
		if err := dialects["db2"].available(); err != nil {
			t.Skipf("%s is set but %v", env, err)
		}
	}
	return dsn
}

// emptyTables deletes every row and frees the purge lease. It names every
// table of the schema but the version and lease ones (a test checks it), so
// the contract suite passes on a second run against the same server.
func emptyTables(t *testing.T, e *Engine) {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	for _, tbl := range emptied(e) {
		if _, err := e.db.ExecContext(ctx, "DELETE FROM "+tbl); err != nil {
			t.Fatalf("emptying %s: %v", tbl, err)
		}
	}
	if _, err := e.db.ExecContext(ctx, "UPDATE "+e.tables.lease+" SET lease_until = 0"); err != nil {
		t.Fatalf("freeing lease: %v", err)
	}
}

// emptied are the tables emptyTables empties.
func emptied(e *Engine) []string {
	return []string{e.tables.codes, e.tables.access, e.tables.refresh, e.tables.revoked, e.tables.keys, e.tables.clients, e.tables.once}
}

// TestEmptyTablesCoversSchema keeps emptyTables in step with the schema: a
// table it forgot (the signing keys, once) made the contract suite fail on
// its second run against a server.
func TestEmptyTablesCoversSchema(t *testing.T) {
	e, err := NewEngine(nil, "sqlite", Options{})
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := Schema("sqlite", DefaultTablePrefix)
	if err != nil {
		t.Fatal(err)
	}
	kept := []string{e.tables.version, e.tables.lease, DefaultTablePrefix + "revocations"}
	for _, s := range stmts {
		if tbl := createdTable(s); tbl != "" && !slices.Contains(kept, tbl) && !slices.Contains(emptied(e), tbl) {
			t.Errorf("emptyTables does not empty %s", tbl)
		}
	}
}

func TestContractSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) stores.Store {
		return newEngine(t, "sqlite", sqliteDSN(t), Options{})
	}, storetest.Options{})
}

func TestContractServers(t *testing.T) {
	for _, sd := range serverDialects {
		t.Run(sd.dialect, func(t *testing.T) {
			dsn := serverDSN(t, sd.dialect, sd.env)
			first := newEngine(t, sd.dialect, dsn, Options{})
			storetest.Run(t, func(t *testing.T) stores.Store {
				e, err := NewEngine(first.db, sd.dialect, Options{})
				if err != nil {
					t.Fatal(err)
				}
				emptyTables(t, e)
				return e
			}, storetest.Options{})
		})
	}
}

// forEachDatabase runs f against SQLite and every configured server.
func forEachDatabase(t *testing.T, f func(t *testing.T, dialect, dsn string, fresh func(t *testing.T, opts Options) *Engine)) {
	t.Run("sqlite", func(t *testing.T) {
		dsn := sqliteDSN(t)
		f(t, "sqlite", dsn, func(t *testing.T, opts Options) *Engine { return newEngine(t, "sqlite", dsn, opts) })
	})
	for _, sd := range serverDialects {
		t.Run(sd.dialect, func(t *testing.T) {
			dsn := serverDSN(t, sd.dialect, sd.env)
			f(t, sd.dialect, dsn, func(t *testing.T, opts Options) *Engine {
				e := newEngine(t, sd.dialect, dsn, opts)
				emptyTables(t, e)
				return e
			})
		})
	}
}

// insertExpired adds n expired access tokens, many rows per statement.
func insertExpired(t *testing.T, e *Engine, n int) {
	t.Helper()
	ctx := testCtx(t, 5*time.Minute)
	const per = 500
	past := time.Now().Add(-time.Hour).UnixMilli()
	for done := 0; done < n; {
		k := min(per, n-done)
		var b strings.Builder
		args := make([]any, 0, k*4)
		if e.d.name == "oracle" {
			b.WriteString("INSERT ALL")
			for i := 0; i < k; i++ {
				fmt.Fprintf(&b, " INTO %s (token_key, client_id, family, issued_at, expires_at) VALUES (?, 'c', ?, ?, ?)", e.tables.access)
			}
			b.WriteString(" SELECT 1 FROM DUAL")
		} else {
			fmt.Fprintf(&b, "INSERT INTO %s (token_key, client_id, family, issued_at, expires_at) VALUES ", e.tables.access)
			for i := 0; i < k; i++ {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString("(?, 'c', ?, ?, ?)")
			}
		}
		for i := 0; i < k; i++ {
			args = append(args, storetest.Key(), "fam-bulk", past-int64(done+i), past)
		}
		if _, err := e.db.ExecContext(ctx, e.d.rebind(b.String()), args...); err != nil {
			t.Fatalf("bulk insert: %v", err)
		}
		done += k
	}
}

func countRows(t *testing.T, e *Engine, table string) int64 {
	t.Helper()
	var n int64
	if err := e.db.QueryRowContext(testCtx(t, time.Minute), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// TestPurgeLarge purges 100,000 expired tokens (20,000 on SQLite) in batches of 1000 and
// reports how long it took.
func TestPurgeLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	forEachDatabase(t, func(t *testing.T, dialect, dsn string, fresh func(*testing.T, Options) *Engine) {
		rows := 100000
		if dialect == "sqlite" {
			rows = 20000 // modernc's SQLite is slow under -race; the point is the servers
		}
		e := fresh(t, Options{})
		live := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, ClientID: "c", Family: "f",
			IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		if err := e.InsertTokens(testCtx(t, time.Minute), live); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		insertExpired(t, e, rows)
		inserted := time.Since(began)
		began = time.Now()
		n, err := e.PurgeExpiredTokens(testCtx(t, 10*time.Minute), 1000)
		took := time.Since(began)
		if err != nil {
			t.Fatalf("PurgeExpiredTokens: %v", err)
		}
		if n != int64(rows) {
			t.Fatalf("purged %d rows, want %d", n, rows)
		}
		if left := countRows(t, e, e.tables.access); left != 1 {
			t.Fatalf("%d rows left, want the 1 live token", left)
		}
		t.Logf("%s: inserted %d expired rows in %v; purged them in batches of 1000 in %v (%.0f rows/s)",
			dialect, rows, inserted.Round(time.Millisecond), took.Round(time.Millisecond), float64(rows)/took.Seconds())
	})
}

// TestPurgeLease checks that of two gateways sharing a database only the
// one holding the lease purges.
func TestPurgeLease(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, dialect, dsn string, fresh func(*testing.T, Options) *Engine) {
		a := fresh(t, Options{Holder: "gateway-a"})
		b := newEngine(t, dialect, dsn, Options{Holder: "gateway-b"})
		ctx := testCtx(t, 5*time.Minute)

		insertExpired(t, a, 3000)
		if ok, err := a.acquireLease(ctx); err != nil || !ok {
			t.Fatalf("a takes the free lease: %v, %v", ok, err)
		}
		if n, err := b.PurgeExpiredTokens(ctx, 100); err != nil || n != 0 {
			t.Fatalf("b purged while a held the lease: %d, %v; want 0, nil", n, err)
		}
		if left := countRows(t, a, a.tables.access); left != 3000 {
			t.Fatalf("b deleted rows without the lease: %d left", left)
		}
		// The holder renews its own lease.
		if n, err := a.PurgeExpiredTokens(ctx, 1000); err != nil || n != 3000 {
			t.Fatalf("a purged %d, %v; want 3000", n, err)
		}
		// a released it: b may purge now.
		insertExpired(t, a, 10)
		if n, err := b.PurgeExpiredTokens(ctx, 100); err != nil || n != 10 {
			t.Fatalf("b after release purged %d, %v; want 10", n, err)
		}

		// Concurrently, one does all the work and the other gets 0.
		insertExpired(t, a, 5000)
		var wg sync.WaitGroup
		var na, nb int64
		var ea, eb error
		wg.Add(2)
		go func() { defer wg.Done(); na, ea = a.PurgeExpiredTokens(ctx, 100) }()
		go func() { defer wg.Done(); nb, eb = b.PurgeExpiredTokens(ctx, 100) }()
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatalf("concurrent purges: %v, %v", ea, eb)
		}
		if na+nb != 5000 || (na != 0 && nb != 0) {
			t.Fatalf("concurrent purges removed %d and %d; want 5000 by one of them", na, nb)
		}
		t.Logf("%s: concurrent purgers removed %d and %d", dialect, na, nb)
	})
}

// TestLeaseExpires checks that a crashed holder's lease runs out.
func TestLeaseExpires(t *testing.T) {
	dsn := sqliteDSN(t)
	a := newEngine(t, "sqlite", dsn, Options{Holder: "crashed", LeaseDuration: 300 * time.Millisecond})
	b := newEngine(t, "sqlite", dsn, Options{Holder: "survivor"})
	ctx := testCtx(t, time.Minute)
	if ok, err := a.acquireLease(ctx); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	insertExpired(t, a, 5)
	if n, _ := b.PurgeExpiredTokens(ctx, 10); n != 0 {
		t.Fatalf("purged %d under another's lease", n)
	}
	time.Sleep(500 * time.Millisecond)
	if n, err := b.PurgeExpiredTokens(ctx, 10); err != nil || n != 5 {
		t.Fatalf("after the lease ran out: %d, %v; want 5", n, err)
	}
}

// TestPurgeBatchOption checks that purge_batch overrides the caller's size.
func TestPurgeBatchOption(t *testing.T) {
	e := newEngine(t, "sqlite", sqliteDSN(t), Options{PurgeBatch: 7})
	insertExpired(t, e, 50)
	if n, err := e.PurgeExpiredTokens(testCtx(t, time.Minute), 1000); err != nil || n != 50 {
		t.Fatalf("purged %d, %v", n, err)
	}
}

// TestPurgePacing checks that on an idle database purge batches start at
// the size asked for and grow (except on MariaDB), that every batch is
// timed against the guard's lookup, and that the store's purge_batch pins
// the size.
func TestPurgePacing(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, dialect, dsn string, fresh func(*testing.T, Options) *Engine) {
		var sizes []int
		var measured int
		done := func(table string, n int, took, lookup, rest time.Duration) {
			if !strings.HasSuffix(table, "access_tokens") {
				return
			}
			sizes = append(sizes, n)
			if lookup > 0 {
				measured++
			}
			if rest > purge.DefaultMaxRest {
				t.Errorf("rest %v over the cap", rest)
			}
		}
		e := fresh(t, Options{PurgeBatchDone: done})
		rows := 20000
		if dialect == "sqlite" {
			rows = 5000
		}
		insertExpired(t, e, rows)
		if n, err := e.PurgeExpiredTokens(testCtx(t, 5*time.Minute), 100); err != nil || n != int64(rows) {
			t.Fatalf("purged %d, %v; want %d", n, err, rows)
		}
		if len(sizes) == 0 || sizes[0] != 100 {
			t.Fatalf("batches %v: want the first of 100", sizes)
		}
		if top := slices.Max(sizes); e.d.purgeGrowth == 1 && top != 100 {
			t.Fatalf("batches %v: %s batches do not grow", sizes, dialect)
		} else if e.d.purgeGrowth != 1 && top < 400 {
			t.Fatalf("batches %v on an idle database: want them grown past 4x", sizes)
		}
		if measured < len(sizes)/2 {
			t.Fatalf("%d of %d batches had a lookup timed during them", measured, len(sizes))
		}
		t.Logf("%s: %d rows in batches %v", dialect, rows, sizes)

		f := fresh(t, Options{PurgeBatch: 300, PurgeBatchDone: done})
		insertExpired(t, f, 2000)
		sizes = nil
		if n, err := f.PurgeExpiredTokens(testCtx(t, 5*time.Minute), 100); err != nil || n != 2000 {
			t.Fatalf("purged %d, %v; want 2000", n, err)
		}
		for _, n := range sizes {
			if n != 300 {
				t.Fatalf("batches %v with purge_batch 300", sizes)
			}
		}
	})
}

func TestStartSchemaChecks(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	dsn := sqliteDSN(t)
	db, err := Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	e, _ := NewEngine(db, "sqlite", Options{TablePrefix: "gw_"})
	err = e.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "sql/sqlite/oauth-server.sql") ||
		!strings.Contains(err.Error(), "gw_") || !strings.Contains(err.Error(), "create_schema") {
		t.Fatalf("Start without schema: %v; want advice naming the file, prefix and create_schema", err)
	}
	if errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("a missing schema is a configuration error, not an outage: %v", err)
	}

	e, _ = NewEngine(db, "sqlite", Options{TablePrefix: "gw_", CreateSchema: true})
	if err := e.Start(ctx); err != nil {
		t.Fatalf("Start with create_schema: %v", err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'gw\\_%' ESCAPE '\\'").Scan(&n); err != nil || n != 10 {
		t.Fatalf("prefixed tables: %d, %v; want 10 (with the revocation feed, the signing keys, the clients and the single-use values)", n, err)
	}

	if _, err := db.ExecContext(ctx, "UPDATE gw_schema_version SET version = 0"); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err == nil || !strings.Contains(err.Error(), "older") {
		t.Fatalf("Start with an old schema: %v", err)
	}
	if _, err := db.ExecContext(ctx, "UPDATE gw_schema_version SET version = 99"); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Start with a newer schema: %v", err)
	}

	// A deleted lease row comes back.
	if _, err := db.ExecContext(ctx, "UPDATE gw_schema_version SET version = "+strconv.Itoa(SchemaVersion)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM gw_purge_lease"); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.acquireLease(ctx); err != nil || !ok {
		t.Fatalf("lease after Start restored its row: %v, %v", ok, err)
	}
}

// TestSchemaUpgrade takes version 1 to 4 schemas to version 5: without
// create_schema Start names the statements to run, with it Start runs them,
// on SQLite and every configured server.
func TestSchemaUpgrade(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, dialect, dsn string, fresh func(*testing.T, Options) *Engine) {
		ctx := testCtx(t, time.Minute)
		e := fresh(t, Options{})
		downgrade := func() {
			t.Helper()
			stmts := []string{"DROP TABLE " + e.tables.revoked, "DROP TABLE " + e.tables.keys}
			// Version 1 had no subject and client_id indexes either.
			for _, idx := range [][2]string{{"codes_sub_idx", e.tables.codes}, {"codes_cli_idx", e.tables.codes},
				{"at_sub_idx", e.tables.access}, {"at_cli_idx", e.tables.access},
				{"rt_sub_idx", e.tables.refresh}, {"rt_cli_idx", e.tables.refresh}} {
				drop := "DROP INDEX " + DefaultTablePrefix + idx[0]
				if dialect == "mysql" || dialect == "sqlserver" {
					drop += " ON " + idx[1]
				}
				stmts = append(stmts, drop)
			}
			for i, s := range append(stmts,
				"DELETE FROM "+e.tables.version,
				"INSERT INTO "+e.tables.version+" (version) VALUES (1)",
			) {
				if i > 1 && i < len(stmts) {
					// A database created by an earlier build may lack them.
					_, _ = e.db.ExecContext(ctx, s)
					continue
				}
				if _, err := e.db.ExecContext(ctx, s); err != nil {
					t.Fatalf("%s: %v", s, err)
				}
			}
		}
		downgrade()
		plain, _ := NewEngine(e.db, dialect, Options{})
		err := plain.Start(ctx)
		if err == nil || !strings.Contains(err.Error(), "CREATE TABLE oauth_revoked_families") ||
			!strings.Contains(err.Error(), "CREATE INDEX oauth_at_sub_idx ON oauth_access_tokens (subject)") ||
			!strings.Contains(err.Error(), "CREATE TABLE oauth_signing_keys") ||
			!strings.Contains(err.Error(), "INSERT INTO oauth_schema_version (version) VALUES (5)") {
			t.Fatalf("Start on a version 1 schema: %v; want the statements to run", err)
		}
		t.Logf("%s: %v", dialect, err)
		up, _ := NewEngine(e.db, dialect, Options{CreateSchema: true})
		if err := up.Start(ctx); err != nil {
			t.Fatalf("Start with create_schema on a version 1 schema: %v", err)
		}
		if v, _, err := up.schemaVersion(ctx); err != nil || v != SchemaVersion {
			t.Fatalf("version after upgrade: %d, %v", v, err)
		}
		if err := up.RevokeFamily(ctx, "fam-up", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		tok := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, Family: "fam-up", IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		if err := up.InsertTokens(ctx, tok); !errors.Is(err, stores.ErrRevoked) {
			t.Fatalf("insert into a revoked family after upgrade: %v", err)
		}
		// A half-done upgrade (table created, version not raised) completes.
		if _, err := e.db.ExecContext(ctx, "DELETE FROM "+e.tables.version+" WHERE version = 3"); err != nil {
			t.Fatal(err)
		}
		if err := up.Start(ctx); err != nil {
			t.Fatalf("Start after a half-done upgrade: %v", err)
		}
		// Version 2 to 3: only the signing-keys table is added.
		for _, s := range []string{"DROP TABLE " + e.tables.keys, "DELETE FROM " + e.tables.version,
			"INSERT INTO " + e.tables.version + " (version) VALUES (2)"} {
			if _, err := e.db.ExecContext(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		err = plain.Start(ctx)
		if err == nil || !strings.Contains(err.Error(), "schema version 2") || !strings.Contains(err.Error(), "CREATE TABLE oauth_signing_keys") ||
			strings.Contains(err.Error(), "oauth_revoked_families") {
			t.Fatalf("Start on a version 2 schema: %v; want the signing-keys statements only", err)
		}
		if err := up.Start(ctx); err != nil {
			t.Fatalf("Start with create_schema on a version 2 schema: %v", err)
		}
		if err := up.StartKeys(ctx); err != nil {
			t.Fatalf("StartKeys after the upgrade to version 3: %v", err)
		}

		// Version 3 to 4: the audience columns and the clients table.
		stmts := []string{"DROP TABLE " + e.tables.clients}
		for _, tbl := range []string{e.tables.codes, e.tables.access, e.tables.refresh} {
			stmts = append(stmts, "ALTER TABLE "+tbl+" DROP COLUMN audience")
		}
		for _, s := range append(stmts, "DELETE FROM "+e.tables.version, "INSERT INTO "+e.tables.version+" (version) VALUES (3)") {
			if _, err := e.db.ExecContext(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		err = plain.Start(ctx)
		add := map[string]string{"mysql": "ADD COLUMN", "postgres": "ADD COLUMN", "sqlite": "ADD COLUMN", "sqlserver": "ADD", "oracle": "ADD", "db2": "ADD COLUMN"}[dialect]
		for _, want := range []string{"schema version 3", "ALTER TABLE oauth_codes " + add + " audience", "ALTER TABLE oauth_access_tokens " + add,
			"ALTER TABLE oauth_refresh_tokens " + add, "CREATE TABLE oauth_clients", "CREATE INDEX oauth_clients_rat_idx", "VALUES (5)"} {
			if err == nil || !strings.Contains(err.Error(), strings.Replace(want, "( ", "(", 1)) {
				t.Fatalf("Start on a version 3 schema: %v; want %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "oauth_signing_keys") {
			t.Fatalf("Start on a version 3 schema names the signing keys: %v", err)
		}
		if err := up.Start(ctx); err != nil {
			t.Fatalf("Start with create_schema on a version 3 schema: %v", err)
		}
		if err := up.StartClients(ctx); err != nil {
			t.Fatalf("StartClients after the upgrade to version 4: %v", err)
		}
		aud := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, Audience: []string{"https://api.example/"}, IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		if err := up.InsertTokens(ctx, aud); err != nil {
			t.Fatal(err)
		}
		if got, err := up.LookupToken(ctx, stores.AccessToken, aud.Key); err != nil || len(got.Audience) != 1 {
			t.Fatalf("a token's audience after the upgrade: %+v, %v", got, err)
		}
		// Half done: a column added, the version not raised.
		if _, err := e.db.ExecContext(ctx, "DELETE FROM "+e.tables.version+" WHERE version = 4"); err != nil {
			t.Fatal(err)
		}
		if err := up.Start(ctx); err != nil {
			t.Fatalf("Start after a half-done upgrade to version 4: %v", err)
		}

		// Version 4 to 5: the jkt and oidc columns and the single-use table.
		stmts = []string{"DROP TABLE " + e.tables.once}
		for _, tbl := range []string{e.tables.codes, e.tables.access, e.tables.refresh} {
			stmts = append(stmts, "ALTER TABLE "+tbl+" DROP COLUMN jkt", "ALTER TABLE "+tbl+" DROP COLUMN oidc")
		}
		for _, s := range append(stmts, "DELETE FROM "+e.tables.version, "INSERT INTO "+e.tables.version+" (version) VALUES (4)") {
			if _, err := e.db.ExecContext(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		err = plain.Start(ctx)
		for _, want := range []string{"schema version 4", "ALTER TABLE oauth_codes " + add + " jkt", "ALTER TABLE oauth_codes " + add + " oidc",
			"ALTER TABLE oauth_access_tokens " + add + " jkt", "ALTER TABLE oauth_refresh_tokens " + add + " oidc",
			"CREATE TABLE oauth_single_use", "CREATE INDEX oauth_single_use_exp_idx", "VALUES (5)"} {
			if dialect == "sqlserver" {
				want = strings.Replace(want, "CREATE INDEX oauth_single_use", "CREATE CLUSTERED INDEX oauth_single_use", 1)
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Start on a version 4 schema: %v; want %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "oauth_clients") || strings.Contains(err.Error(), "audience") {
			t.Fatalf("Start on a version 4 schema names version 4's changes: %v", err)
		}
		// A grant issued before the upgrade reads back without a binding.
		before := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		if _, err := e.db.ExecContext(ctx, "INSERT INTO "+e.tables.access+" (token_key, issued_at, expires_at) VALUES ("+
			strings.Join([]string{e.d.placeholder(1), e.d.placeholder(2), e.d.placeholder(3)}, ", ")+")",
			before.Key, millis(before.IssuedAt), millis(before.ExpiresAt)); err != nil {
			t.Fatal(err)
		}
		if err := up.Start(ctx); err != nil {
			t.Fatalf("Start with create_schema on a version 4 schema: %v", err)
		}
		if got, err := up.LookupToken(ctx, stores.AccessToken, before.Key); err != nil || got.JKT != "" || got.OIDC != nil {
			t.Fatalf("a token of version 4 after the upgrade: %+v, %v", got, err)
		}
		bound := &stores.Token{Key: storetest.Key(), Kind: stores.RefreshToken, JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
			OIDC:     &stores.OIDCGrant{SessionID: "sid", Claims: map[string]any{"email": "a@example.com"}},
			IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		if err := up.InsertTokens(ctx, bound); err != nil {
			t.Fatal(err)
		}
		if got, err := up.ConsumeRefreshToken(ctx, bound.Key); err != nil || got.JKT != bound.JKT || got.OIDC == nil || got.OIDC.Claims["email"] != "a@example.com" {
			t.Fatalf("a bound token after the upgrade: %+v, %v", got, err)
		}
		if err := up.PutOnce(ctx, "par:x", []byte("req"), time.Now().Add(time.Minute)); err != nil {
			t.Fatalf("PutOnce after the upgrade to version 5: %v", err)
		}
		if v, err := up.TakeOnce(ctx, "par:x"); err != nil || string(v) != "req" {
			t.Fatalf("TakeOnce after the upgrade to version 5: %q, %v", v, err)
		}
		// Half done: the columns and the table there, the version not raised.
		if _, err := e.db.ExecContext(ctx, "DELETE FROM "+e.tables.version+" WHERE version = 5"); err != nil {
			t.Fatal(err)
		}
		if err := up.Start(ctx); err != nil {
			t.Fatalf("Start after a half-done upgrade to version 5: %v", err)
		}
		if err := up.PutOnce(ctx, "par:x", nil, time.Now().Add(time.Minute)); !errors.Is(err, stores.ErrExists) {
			t.Fatalf("single-use value lost in the resumed upgrade: %v", err)
		}
	})
}

// TestRevokedMarkersPurged checks that purge deletes expired markers,
// uncounted, and keeps live ones.
func TestRevokedMarkersPurged(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, dialect, dsn string, fresh func(*testing.T, Options) *Engine) {
		ctx := testCtx(t, time.Minute)
		e := fresh(t, Options{})
		for i := 0; i < 25; i++ {
			if err := e.RevokeFamily(ctx, "fam-old-"+strconv.Itoa(i), time.Now().Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.RevokeFamily(ctx, "fam-live", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if n, err := e.PurgeExpiredTokens(ctx, 10); err != nil || n != 0 {
			t.Fatalf("PurgeExpiredTokens = %d, %v; want 0 (markers are not counted)", n, err)
		}
		if n := countRows(t, e, e.tables.revoked); n != 1 {
			t.Fatalf("%d markers left, want the live one", n)
		}
	})
}

// TestOutage points stores at a closed port and at a server that accepts
// connections but never answers: every call must fail with ErrUnavailable
// within its context deadline.
func TestOutage(t *testing.T) {
	silent := silentServer(t)
	for _, tc := range []struct{ dialect, closed, hung string }{
		{"mysql", "u:p@tcp(127.0.0.1:1)/db", "u:p@tcp(" + silent + ")/db"},
		{"postgres", "postgres://u:p@127.0.0.1:1/db?sslmode=disable", "postgres://u:p@" + silent + "/db?sslmode=disable"},
		{"sqlserver", "sqlserver://u:p@127.0.0.1:1?database=db", "sqlserver://u:p@" + silent + "?database=db"},
		{"oracle", "oracle://u:p@127.0.0.1:1/svc", "oracle://u:p@" + silent + "/svc"},
		{"sqlite", filepath.Join(t.TempDir(), "missing-dir", "x.db"), ""},
	} {
		for _, target := range []struct{ name, dsn string }{{"closed", tc.closed}, {"hung", tc.hung}} {
			if target.dsn == "" {
				continue
			}
			t.Run(tc.dialect+"/"+target.name, func(t *testing.T) {
				db, err := Open(tc.dialect, target.dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				e, err := NewEngine(db, tc.dialect, Options{})
				if err != nil {
					t.Fatal(err)
				}
				const deadline = 700 * time.Millisecond
				calls := map[string]func(ctx context.Context) error{
					"Start": e.Start,
					"Lookup": func(ctx context.Context) error {
						_, err := e.LookupToken(ctx, stores.AccessToken, storetest.Key())
						return err
					},
					"Consume": func(ctx context.Context) error {
						_, err := e.ConsumeCode(ctx, storetest.Key())
						return err
					},
					"Purge": func(ctx context.Context) error { _, err := e.PurgeExpiredTokens(ctx, 10); return err },
				}
				for name, call := range calls {
					ctx, cancel := context.WithTimeout(context.Background(), deadline)
					began := time.Now()
					err := call(ctx)
					took := time.Since(began)
					cancel()
					if !errors.Is(err, stores.ErrUnavailable) {
						t.Errorf("%s: got %v, want ErrUnavailable", name, err)
					}
					if took > deadline+500*time.Millisecond {
						t.Errorf("%s took %v, beyond the %v deadline", name, took, deadline)
					}
				}
			})
		}
	}
}

// silentServer accepts TCP connections and never writes to them.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []interface{ Close() error }
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestSchemaAndDSNErrors checks errors that need no database.
func TestSchemaAndDSNErrors(t *testing.T) {
	if _, err := Open("nosuch", "x"); err == nil || !strings.Contains(err.Error(), "mysql, oracle, postgres") {
		t.Fatalf("unknown dialect: %v", err)
	}
	if _, err := Open("mysql", "not a dsn"); err == nil {
		t.Fatal("invalid mysql DSN accepted")
	}
	db, _ := sql.Open("sqlite", ":memory:")
	defer db.Close()
	if _, err := NewEngine(db, "sqlite", Options{TablePrefix: "x; DROP TABLE y"}); err == nil {
		t.Fatal("unsafe prefix accepted")
	}
}

// BenchmarkLookupToken measures the guard's hot path against SQLite and
// the configured servers.
func BenchmarkLookupToken(b *testing.B) {
	targets := []struct{ dialect, dsn string }{{"sqlite", filepath.Join(b.TempDir(), "bench.db")}}
	for _, sd := range serverDialects {
		if dsn := os.Getenv(sd.env); dsn != "" && sd.dialect != "db2" {
			targets = append(targets, struct{ dialect, dsn string }{sd.dialect, dsn})
		}
	}
	for _, tg := range targets {
		b.Run(tg.dialect, func(b *testing.B) {
			db, err := Open(tg.dialect, tg.dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			e, _ := NewEngine(db, tg.dialect, Options{CreateSchema: true})
			ctx := context.Background()
			if err := e.Start(ctx); err != nil {
				b.Fatal(err)
			}
			tok := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, ClientID: "c", Family: "f",
				IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
			if err := e.InsertTokens(ctx, tok); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.LookupToken(ctx, stores.AccessToken, tok.Key); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
