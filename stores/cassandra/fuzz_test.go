package cassandra

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzUnmarshalCaddyfile feeds arbitrary Caddyfile text to the Cassandra
// store. It never panics; an accepted config names consistency levels in
// their canonical form and re-marshals to JSON that reads back unchanged.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, s := range []string{
		"cassandra", "cassandra {\n}", "cassandra x",
		`cassandra {
			hosts 127.0.0.1:9042 [::1]:9042 db.example
			keyspace oauth2
			read_consistency local_quorum
			write_consistency QUORUM
			serial_consistency LOCAL_SERIAL
			local_dc dc1
			username cassandra
			password {env.CASSANDRA_PASSWORD}
			timeout 2s
			create_schema
		}`,
		"cassandra {\n hosts\n}", "cassandra {\n read_consistency most\n}", "cassandra {\n serial_consistency one\n}",
		"cassandra {\n timeout 0s\n}", "cassandra {\n timeout -1s\n}", "cassandra {\n timeout 1d\n}",
		"cassandra {\n keyspace a b\n}", "cassandra {\n keyspace a\n keyspace b\n}", "cassandra {\n create_schema 1\n}",
		"cassandra {\n read_consistency \" one \"\n}", "cassandra {\n password \"\"\n}",
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
		for _, level := range []string{s.ReadConsistency, s.WriteConsistency, s.SerialConsistency} {
			if level == "" {
				continue
			}
			if c, err := parseConsistency(level); err != nil || c.String() != level {
				t.Fatalf("%q accepted with consistency %q: %v", input, level, err)
			}
		}
		if s.Timeout < 0 {
			t.Fatalf("%q accepted with timeout %v", input, s.Timeout)
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
