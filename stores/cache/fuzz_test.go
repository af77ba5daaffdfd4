package cache

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzUnmarshalCaddyfile feeds arbitrary Caddyfile text to the cache
// store. It never panics; an accepted config has sizes Validate can judge
// and re-marshals to JSON that reads back unchanged.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, s := range []string{
		"cache", "cache {\n}", "cache big",
		"cache {\n name sessions\n max_memory 64\n shards 128\n}",
		"cache {\n max_memory 0\n}", "cache {\n max_memory -5\n}", "cache {\n max_memory 256MB\n}",
		"cache {\n shards 100\n}", "cache {\n shards 0\n}", "cache {\n shards 9223372036854775807\n}",
		"cache {\n shards -9223372036854775808\n}", "cache {\n max_memory 9223372036854775807\n shards 1\n}",
		"cache {\n name\n}", "cache {\n name a b\n}", "cache {\n name a\n name b\n}", "cache {\n life 5m\n}",
		"cache {\n name \"\"\n}", "cache {\n {\n }\n}",
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
		if s.MaxMemory < 0 || s.Shards < 0 || s.Shards&(s.Shards-1) != 0 {
			t.Fatalf("%q accepted as %+v", input, s)
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
