package sql

import (
	"testing"
	"unicode/utf8"

	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// FuzzUnmarshalCaddyfile feeds arbitrary Caddyfile text to the SQL store.
// It never panics; an accepted config passes Validate (the Caddyfile checks
// everything Validate does) and re-marshals to JSON that reads back
// unchanged.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, s := range []string{
		"sql", "sql {\n}", "sql x {\n}",
		`sql {
			dialect postgres
			dsn "postgres://u:p@127.0.0.1/db?sslmode=disable"
			table_prefix oauth2_
			max_open_conns 10
			max_idle_conns 5
			conn_max_lifetime 5m
			create_schema
			purge_batch 500
		}`,
		"sql {\n dialect mysql\n dsn u:p@tcp(127.0.0.1)/db\n}",
		"sql {\n dialect sqlite\n dsn file::memory:\n}",
		"sql {\n dialect nosuch\n dsn x\n}",
		"sql {\n dialect oracle\n}",
		"sql {\n dsn x\n}",
		"sql {\n dialect db2\n dsn x\n table_prefix 1bad\n}",
		"sql {\n dialect sqlserver\n dsn x\n max_open_conns 0\n}",
		"sql {\n dialect postgres\n dsn x\n conn_max_lifetime -1s\n}",
		"sql {\n dialect postgres\n dsn x\n create_schema yes\n}",
		"sql {\n dialect postgres\n dialect mysql\n dsn x\n}",
		"sql {\n dialect postgres\n dsn \"\"\n}",
		"sql {\n dialect postgres\n dsn x\n purge_batch 99999999999999999999\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		if !utf8.ValidString(input) { // JSON cannot carry invalid UTF-8
			return
		}
		d := storetest.FuzzDispenser(input)
		if d == nil {
			return
		}
		s := new(Store)
		if err := s.UnmarshalCaddyfile(d); err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("%q accepted, but Validate says: %v", input, err)
		}
		storetest.CheckRoundTrip(t, input, s)
	})
}
