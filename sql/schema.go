// Package sql holds the schema files users run by hand, sql/<dbms>/oauth-server.sql
// (and the Cassandra one), embedded so that the stores' create_schema applies
// exactly these files.
package sql

import "embed"

// Files holds <dbms>/oauth-server.sql for every relational dialect and
// cassandra/oauth-server.cql.
//
//go:embed */oauth-server.sql cassandra/oauth-server.cql
var Files embed.FS
