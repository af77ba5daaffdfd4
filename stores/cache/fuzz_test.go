package cache

import (
	"testing"
	"unicode/utf8"

	"github.com/tokengate/caddy-oauth2/stores/storetest"
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
		d := storetest.FuzzDispenser(input)
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
		storetest.CheckRoundTrip(t, input, s)
	})
}
