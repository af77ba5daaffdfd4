package sql

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// schemaTarget is a database with a table prefix no other test uses; its
// tables are dropped when the test ends.
type schemaTarget struct {
	dialect, dsn, prefix string
}

func (st schemaTarget) engine(t *testing.T, create bool, wait time.Duration) *Engine {
	t.Helper()
	db, err := Open(st.dialect, st.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e, err := NewEngine(db, st.dialect, Options{TablePrefix: st.prefix, CreateSchema: create})
	if err != nil {
		t.Fatal(err)
	}
	e.schemaWait = wait
	return e
}

// exec runs a statement of the prefixed schema file, or any statement.
func (st schemaTarget) exec(t *testing.T, q string) {
	t.Helper()
	e := st.engine(t, false, 0)
	if _, err := e.db.ExecContext(testCtx(t, time.Minute), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (st schemaTarget) schema(t *testing.T) []string {
	t.Helper()
	stmts, err := Schema(st.dialect, st.prefix)
	if err != nil {
		t.Fatal(err)
	}
	return stmts
}

// tableExists reports whether a table of the prefix can be read.
func (st schemaTarget) tableExists(t *testing.T, table string) bool {
	e := st.engine(t, false, 0)
	rows, err := e.db.QueryContext(testCtx(t, time.Minute), "SELECT COUNT(*) FROM "+table)
	if err != nil {
		return false
	}
	rows.Close()
	return true
}

// forEachSchemaTarget runs f on SQLite and every configured server, each
// time with a fresh table prefix.
func forEachSchemaTarget(t *testing.T, f func(t *testing.T, st schemaTarget)) {
	forEachDatabase(t, func(t *testing.T, dialect, dsn string, _ func(*testing.T, Options) *Engine) {
		var b [4]byte
		_, _ = rand.Read(b[:])
		st := schemaTarget{dialect, dsn, "s" + hex.EncodeToString(b[:]) + "_"}
		t.Cleanup(func() {
			db, err := Open(dialect, dsn)
			if err != nil {
				return
			}
			defer db.Close()
			stmts, _ := Schema(dialect, st.prefix)
			for i := len(stmts) - 1; i >= 0; i-- {
				if tbl := createdTable(stmts[i]); tbl != "" {
					_, _ = db.ExecContext(context.Background(), "DROP TABLE "+tbl)
				}
			}
		})
		f(t, st)
	})
}

// TestCreateSchemaConcurrently starts several gateways with create_schema
// on an empty database at once: every one must start.
func TestCreateSchemaConcurrently(t *testing.T) {
	forEachSchemaTarget(t, func(t *testing.T, st schemaTarget) {
		const n = 4
		engines := make([]*Engine, n)
		for i := range engines {
			engines[i] = st.engine(t, true, schemaWait)
		}
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, e := range engines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = e.Start(testCtx(t, time.Minute))
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("gateway %d: %v", i, err)
			}
		}
		if ok, err := engines[0].acquireLease(testCtx(t, time.Minute)); err != nil || !ok {
			t.Fatalf("lease after concurrent creation: %v, %v", ok, err)
		}
	})
}

// TestCreateSchemaWaitsForCreator finds the version table without its row,
// as while another gateway is creating the schema: Start waits for the row,
// and past its bound reports a half-applied schema and the file to run.
func TestCreateSchemaWaitsForCreator(t *testing.T) {
	forEachSchemaTarget(t, func(t *testing.T, st schemaTarget) {
		stmts := st.schema(t)
		st.exec(t, stmts[0])

		e := st.engine(t, true, 500*time.Millisecond)
		err := e.Start(testCtx(t, time.Minute))
		if err == nil || !strings.Contains(err.Error(), "half applied") ||
			!strings.Contains(err.Error(), "sql/"+st.dialect+"/oauth-server.sql") {
			t.Fatalf("Start on a version table without its row: %v; want a half-applied schema naming the file", err)
		}

		// The creator finishes while the second gateway waits.
		for _, s := range stmts[1:] {
			if strings.HasPrefix(s, "INSERT INTO "+st.prefix+"schema_version") {
				go func() {
					time.Sleep(300 * time.Millisecond)
					st.exec(t, s)
				}()
				continue
			}
			st.exec(t, s)
		}
		e = st.engine(t, false, 5*time.Second)
		if err := e.Start(testCtx(t, time.Minute)); err != nil {
			t.Fatalf("Start while the creator finishes: %v", err)
		}
	})
}

// TestCreateSchemaFailure makes create_schema fail part way, on a table
// that is in the way: the error names the statement and the file, and no
// table of the schema is left behind for the next start to trip over.
func TestCreateSchemaFailure(t *testing.T) {
	forEachSchemaTarget(t, func(t *testing.T, st schemaTarget) {
		codes := st.prefix + "codes"
		st.exec(t, "CREATE TABLE "+codes+" (other INTEGER)")
		e := st.engine(t, true, 500*time.Millisecond)
		err := e.Start(testCtx(t, time.Minute))
		if err == nil {
			t.Fatal("create_schema over a conflicting table succeeded")
		}
		nth := 0
		for i, s := range st.schema(t) {
			if createdTable(s) == codes {
				nth = i + 1
			}
		}
		for _, want := range []string{fmt.Sprintf("statement %d of sql/%s/oauth-server.sql", nth, st.dialect), "CREATE TABLE " + codes, "by hand"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
		if st.tableExists(t, st.prefix+"schema_version") {
			t.Errorf("the version table was left behind: %v", err)
		}
		t.Logf("%s: %v", st.dialect, err)

		// Out of the way, the next start creates the schema.
		st.exec(t, "DROP TABLE "+codes)
		if err := st.engine(t, true, schemaWait).Start(testCtx(t, time.Minute)); err != nil {
			t.Fatalf("Start after the cause was fixed: %v", err)
		}
	})
}
