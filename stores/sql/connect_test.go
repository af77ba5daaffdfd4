package sql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeConnector hands out connections that record what they execute and
// report a fixed number of affected rows, as a server with NOCOUNT off and
// a trigger on the table would (go-mssqldb sums the counts).
type fakeConnector struct {
	mu       sync.Mutex
	executed []string
	affected int64
}

func (c *fakeConnector) Connect(context.Context) (driver.Conn, error) { return &fakeConn{c}, nil }
func (c *fakeConnector) Driver() driver.Driver                        { return nil }

type fakeConn struct{ c *fakeConnector }

func (f *fakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("fake: no prepare") }
func (f *fakeConn) Close() error                        { return nil }
func (f *fakeConn) Begin() (driver.Tx, error)           { return nil, errors.New("fake: no transactions") }

func (f *fakeConn) ExecContext(_ context.Context, q string, _ []driver.NamedValue) (driver.Result, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	f.c.executed = append(f.c.executed, q)
	return driver.RowsAffected(f.c.affected), nil
}

// TestCountsAboveOne checks that a claim and the purge lease are won when
// the driver reports more than one row, as go-mssqldb does when a trigger
// on the table writes rows of its own.
func TestCountsAboveOne(t *testing.T) {
	for _, c := range []struct {
		affected int64
		want     bool
	}{{0, false}, {1, true}, {2, true}} {
		fc := &fakeConnector{affected: c.affected}
		db := sql.OpenDB(fc)
		e, err := NewEngine(db, "sqlserver", Options{Holder: "a"})
		if err != nil {
			t.Fatal(err)
		}
		ctx := testCtx(t, 10*time.Second)
		if won, err := e.claim(ctx, e.q.consumeCode, "k", nowMillis()); err != nil || won != c.want {
			t.Errorf("claim with %d rows: %v, %v; want %v", c.affected, won, err, c.want)
		}
		if ok, err := e.acquireLease(ctx); err != nil || ok != c.want {
			t.Errorf("lease with %d rows: %v, %v; want %v", c.affected, ok, err, c.want)
		}
		for _, q := range fc.executed {
			if !strings.HasPrefix(q, "SET NOCOUNT OFF; ") {
				t.Errorf("sent without SET NOCOUNT OFF: %s", q)
			}
		}
		db.Close()
	}
}
