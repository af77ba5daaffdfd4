package sql

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
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
		d := fuzzDispenser(input)
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
		checkRoundTrip(t, input, s)
	})
}

// fuzzDispenser returns a dispenser over input, or nil when the lexer
// refuses it: caddyfile.NewTestDispenser would log.Fatal on such input and
// take the fuzzing worker down, and would expand {$ENV} variables.
func fuzzDispenser(input string) *caddyfile.Dispenser {
	tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
	if err != nil {
		return nil
	}
	return caddyfile.NewDispenser(tokens)
}

// checkRoundTrip fails unless s, an accepted config, marshals to valid JSON
// that unmarshals to an equal config.
func checkRoundTrip(t *testing.T, input string, s *Store) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil || !json.Valid(b) {
		t.Fatalf("%q accepted, but marshals to %s: %v", input, b, err)
	}
	back := new(Store)
	if err := json.Unmarshal(b, back); err != nil {
		t.Fatalf("%q accepted, but its JSON %s does not unmarshal: %v", input, b, err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Fatalf("%q accepted, but its JSON %s reads back as %+v, not %+v", input, b, back, s)
	}
}
