package cassandra

import (
	"testing"
	"unicode/utf8"

	"github.com/tokengate/caddy-oauth2/stores/storetest"
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
		d := storetest.FuzzDispenser(input)
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
		storetest.CheckRoundTrip(t, input, s)
	})
}
