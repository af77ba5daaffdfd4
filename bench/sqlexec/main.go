// Command sqlexec runs SQL statements against MySQL/MariaDB or PostgreSQL, or
// CQL statements against Cassandra (-driver cql, -dsn host:port,...), for
// bench/run.sh, which should not depend on the servers' command-line clients
// or parse DSNs. Each argument is one statement; for a statement that returns
// rows, the first column of the first row is printed.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
)

func main() {
	driver := flag.String("driver", "pgx", "database/sql driver: pgx or mysql")
	dsn := flag.String("dsn", "", "data source name")
	timeout := flag.Duration("timeout", 10*time.Minute, "bound on all statements together")
	flag.Parse()
	if *driver == "cql" {
		cql(*dsn, *timeout, flag.Args())
		return
	}
	db, err := sql.Open(*driver, *dsn)
	if err != nil {
		fail(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one session, so SET statements apply to the next ones
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	for _, stmt := range flag.Args() {
		verb := strings.ToUpper(strings.Fields(stmt + " x")[0])
		if verb == "SELECT" || verb == "WITH" || verb == "SHOW" {
			var v any
			if err := db.QueryRowContext(ctx, stmt).Scan(&v); err != nil {
				fail(fmt.Errorf("%s: %w", stmt, err))
			}
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			fmt.Println(v)
			continue
		}
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			fail(fmt.Errorf("%s: %w", stmt, err))
		}
	}
}

// cql executes each statement on a Cassandra cluster.
func cql(hosts string, timeout time.Duration, stmts []string) {
	cluster := gocql.NewCluster(strings.Split(hosts, ",")...)
	cluster.Consistency = gocql.One
	cluster.Timeout = timeout
	session, err := cluster.CreateSession()
	if err != nil {
		fail(err)
	}
	defer session.Close()
	for _, stmt := range stmts {
		if err := session.Query(stmt).Exec(); err != nil {
			fail(fmt.Errorf("%s: %w", stmt, err))
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sqlexec:", err)
	os.Exit(1)
}
