package external

// Issue 16's new issuer options, through the validator against mock
// authorization servers over real HTTP. Before the fixes these options did
// not exist.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/caddy-oauth2/validator"
)

// Item 2: at most MaxConcurrent calls at once; a token finding no slot is
// an outage by choice (503), never a pass.
func TestIntrospectionConcurrencyCap(t *testing.T) {
	p := newIDP(t)
	p.introspectDelay = 300 * time.Millisecond
	in := p.introspector(t, 0, nil)
	in = withConfig(t, in, func(c *Config) { c.MaxConcurrent = 2 })
	src := Introspection{in}
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[string]int{}
	for i := range 8 {
		wg.Go(func() {
			_, err := src.Verify(context.Background(), fmt.Sprintf("random-%d", i))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, validator.ErrOverloaded):
				statuses["overloaded"]++
			case errors.Is(err, validator.ErrInvalidToken):
				statuses["invalid"]++
			default:
				statuses[fmt.Sprint(err)]++
			}
		})
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	if m := p.maxInflight.Load(); m > 2 {
		t.Fatalf("%d introspections under way at once, want at most 2", m)
	}
	if statuses["overloaded"] != 6 || statuses["invalid"] != 2 {
		t.Fatalf("answers %v, want 2 invalid and 6 overloaded", statuses)
	}
}

// withConfig returns a new introspector of in's configuration changed by f.
func withConfig(t *testing.T, in *Introspector, f func(*Config)) *Introspector {
	cfg := in.cfg
	f(&cfg)
	out, err := NewIntrospector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Item 2: token_prefix routes a claimed token to its server only, and
// keeps the others away from it.
func TestIntrospectionTokenPrefix(t *testing.T) {
	a, b := newIDP(t), newIDP(t)
	a.active["a_1"] = map[string]any{"active": true, "sub": "ay"}
	b.active["b-1"] = map[string]any{"active": true, "sub": "bee"}
	ina := withConfig(t, a.introspector(t, 0, nil), func(c *Config) { c.TokenPrefixes = []string{"a_"} })
	src := Introspection{ina, b.introspector(t, 0, nil)}
	check := guard(t, 0, src)
	if got := check("a_1"); got != 200 {
		t.Fatalf("A's token: %d", got)
	}
	if got := check("b-1"); got != 200 {
		t.Fatalf("B's token: %d", got)
	}
	if got := check("a_unknown"); got != 401 {
		t.Fatalf("unknown A token: %d", got)
	}
	a.mu.Lock()
	gotA := fmt.Sprint(a.received)
	a.mu.Unlock()
	b.mu.Lock()
	gotB := fmt.Sprint(b.received)
	b.mu.Unlock()
	if gotA != "[a_1 a_unknown]" || gotB != "[b-1]" {
		t.Fatalf("A received %s, B received %s", gotA, gotB)
	}
	// B down: A's tokens are not B's, so not an outage for them.
	b.setDown(true)
	if got := check("a_unknown-2"); got != 401 {
		t.Fatalf("unknown A token with B down: %d, want 401", got)
	}
}

// Item 4: require_typ makes at+jwt mandatory.
func TestJWTRequireTyp(t *testing.T) {
	p := newIDP(t)
	cfg := p.config()
	cfg.RequireTyp = true
	check := guard(t, 0, newJWT(t, cfg))
	p.mu.Lock()
	k := p.keys[0]
	p.mu.Unlock()
	for typ, want := range map[string]int{"at+jwt": 200, "application/at+jwt": 200, "JWT": 401, "": 401, "jwt": 401} {
		if got := check(signTyp(t, k, jose.ES256, typ, p.claims(nil))); got != want {
			t.Errorf("typ %q: %d, want %d", typ, got, want)
		}
	}
}

// Item 5: the grant says who vouched, with the issuer's subject prefix.
func TestGrantNamesItsIssuer(t *testing.T) {
	p := newIDP(t)
	p.active["opaque"] = map[string]any{"active": true, "sub": "alice"}
	cfg := p.config()
	cfg.SubjectPrefix = "idp:"
	j := newJWT(t, cfg)
	in := withConfig(t, p.introspector(t, 0, nil), func(c *Config) { c.SubjectPrefix = "idp:" })
	for name, verify := range map[string]func() (validator.Grant, error){
		"jwt":    func() (validator.Grant, error) { return j.Verify(context.Background(), p.token(t, nil)) },
		"opaque": func() (validator.Grant, error) { return Introspection{in}.Verify(context.Background(), "opaque") },
	} {
		g, err := verify()
		if err != nil {
			t.Fatal(err)
		}
		if g.Issuer == nil || g.Issuer.ID != p.iss || g.Issuer.SubjectPrefix != "idp:" || g.Token.Subject != "alice" {
			t.Errorf("%s: issuer %+v subject %q", name, g.Issuer, g.Token.Subject)
		}
	}
}

// Item 12: a failing server is logged once, then once per interval with
// the count of what was not logged.
func TestFailuresLoggedRateLimited(t *testing.T) {
	p := newIDP(t)
	p.setDown(true)
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	type line struct {
		msg        string
		suppressed int
	}
	var lines []line
	in := withConfig(t, p.introspector(t, 0, clock), func(c *Config) {
		c.NegativeCacheTTL = -1
		c.Log = func(msg string, err error, suppressed int) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, line{msg, suppressed})
		}
	})
	check := guard(t, 0, Introspection{in})
	for i := range 96 {
		if got := check(fmt.Sprintf("tok-%d", i)); got != 503 {
			t.Fatalf("down: %d", got)
		}
	}
	mu.Lock()
	if len(lines) != 1 || lines[0].suppressed != 0 {
		t.Fatalf("96 failures logged as %v, want one line", lines)
	}
	now = now.Add(10 * time.Second)
	mu.Unlock()
	check("one-more")
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 2 || lines[1].suppressed != 95 {
		t.Fatalf("after the interval: %v, want a second line counting 95", lines)
	}
}
