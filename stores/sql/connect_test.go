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
	failOn   string
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
	if f.c.failOn != "" && strings.Contains(q, f.c.failOn) {
		return nil, errors.New("fake: refused")
	}
	return driver.RowsAffected(f.c.affected), nil
}

func (c *fakeConnector) count(q string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.executed {
		if e == q {
			n++
		}
	}
	return n
}

// TestConnInitOnEveryConnection checks that Db2's lock timeout is set on
// every new connection before it is used, and that a connection it cannot
// be set on is not used.
func TestConnInitOnEveryConnection(t *testing.T) {
	fc := &fakeConnector{}
	init := dialects["db2"].connInit(ConnOptions{LockTimeout: 1500 * time.Millisecond})
	db := sql.OpenDB(ctxConnector{initConnector{fc, init}})
	defer db.Close()
	ctx := testCtx(t, 10*time.Second)

	// Two connections at once: one held in a transaction-free conn.
	c1, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.ExecContext(ctx, "UPDATE t SET a = 1"); err != nil {
		t.Fatal(err)
	}
	c1.Close()
	c2.Close()
	if n := fc.count("SET CURRENT LOCK TIMEOUT 2"); n != 2 {
		t.Fatalf("lock timeout set %d times for 2 connections: %q", n, fc.executed)
	}
	if fc.executed[0] != "SET CURRENT LOCK TIMEOUT 2" {
		t.Fatalf("first statement on a connection: %q", fc.executed[0])
	}

	fc = &fakeConnector{failOn: "LOCK TIMEOUT"}
	db2 := sql.OpenDB(ctxConnector{initConnector{fc, init}})
	defer db2.Close()
	_, err = db2.ExecContext(ctx, "UPDATE t SET a = 1")
	if err == nil || !strings.Contains(err.Error(), "SET CURRENT LOCK TIMEOUT 2") {
		t.Fatalf("a connection whose lock timeout failed was used: %v", err)
	}
	if fc.count("UPDATE t SET a = 1") != 0 {
		t.Fatal("the statement ran on a connection without its lock timeout")
	}
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
