package storetest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzDispenser returns a dispenser over input for a Caddyfile fuzz target,
// or nil when the lexer refuses the input: caddyfile.NewTestDispenser would
// log.Fatal on such input and take the fuzzing worker down, and would expand
// {$ENV} variables.
func FuzzDispenser(input string) *caddyfile.Dispenser {
	tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
	if err != nil {
		return nil
	}
	return caddyfile.NewDispenser(tokens)
}

// CheckRoundTrip fails unless v, a config the Caddyfile input was accepted
// as, marshals to valid JSON that unmarshals to an equal value and marshals
// again to the same bytes.
func CheckRoundTrip[T any](t *testing.T, input string, v *T) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil || !json.Valid(b) {
		t.Fatalf("%q accepted, but marshals to %s: %v", input, b, err)
	}
	back := new(T)
	if err := json.Unmarshal(b, back); err != nil {
		t.Fatalf("%q accepted, but its JSON %s does not unmarshal: %v", input, b, err)
	}
	if !reflect.DeepEqual(back, v) {
		t.Fatalf("%q accepted, but its JSON %s reads back as %+v, not %+v", input, b, back, v)
	}
	if b2, _ := json.Marshal(back); !bytes.Equal(b, b2) {
		t.Fatalf("%q accepted, but its JSON %s marshals again as %s", input, b, b2)
	}
}
