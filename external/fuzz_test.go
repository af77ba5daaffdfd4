package external

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tokengate/caddy-oauth2/validator"
)

// FuzzJWT feeds arbitrary bearer values to an issuer's JWT source whose keys
// are already held: nothing panics, nothing but the issuer's own token
// passes, and nothing is an outage.
func FuzzJWT(f *testing.F) {
	p := newIDP(f)
	j, err := NewJWT(p.config())
	if err != nil {
		f.Fatal(err)
	}
	good := p.token(f, nil)
	if _, err := j.Verify(context.Background(), good); err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(good, ".")
	for _, seed := range []string{
		good, parts[0] + "." + parts[1] + ".", parts[1], "a.b.c", "..", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.",
		parts[0] + "." + parts[1] + "." + parts[2] + ".x", strings.ToUpper(good),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		recognized := j.Recognize(raw)
		_ = Introspection(nil).Recognize(raw)
		if !recognized {
			return
		}
		_, err := j.Verify(context.Background(), raw)
		switch {
		case err == nil && raw != good:
			t.Fatalf("%q passed", raw)
		case err != nil && !errors.Is(err, validator.ErrInvalidToken):
			t.Fatalf("%q: %v, want invalid token", raw, err)
		}
	})
}
