package validator

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// fakeTokens is a map-backed TokenStore; only LookupToken matters here.
type fakeTokens struct {
	stores.TokenStore
	tokens map[string]*stores.Token
	err    error
}

func (f *fakeTokens) LookupToken(ctx context.Context, kind stores.Kind, key string) (*stores.Token, error) {
	if f.err != nil {
		return nil, f.err
	}
	t, ok := f.tokens[key]
	if !ok || t.Kind != kind {
		return nil, stores.ErrNotFound
	}
	return t, nil
}

func setup(t testing.TB, scopes ...string) (*Validator, *fakeTokens, func(scope string, ttl time.Duration) string) {
	h := token.NewHasher([]byte("test secret"))
	f := &fakeTokens{tokens: map[string]*stores.Token{}}
	v, err := New(Config{Tokens: f, Hasher: h, Realm: "api", Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(scope string, ttl time.Duration) string {
		raw, err := token.New(token.AccessPrefix)
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[h.Key(raw)] = &stores.Token{Kind: stores.AccessToken, ClientID: "c", Subject: "alice", Scope: scope, ExpiresAt: time.Now().Add(ttl)}
		return raw
	}
	return v, f, issue
}

func TestCheck(t *testing.T) {
	v, _, issue := setup(t, "read", "write")
	good := issue("write admin read", time.Hour)
	narrow := issue("read", time.Hour)
	expired := issue("read write", -time.Second)
	refresh, _ := token.New(token.RefreshPrefix)

	for _, tc := range []struct {
		name      string
		headers   []string
		status    int
		challenge string
	}{
		{"valid", []string{"Bearer " + good}, 0, ""},
		{"scheme is case-insensitive", []string{"bEARER " + good}, 0, ""},
		{"no header", nil, 401, `Bearer realm="api"`},
		{"basic credentials", []string{"Basic YWxpY2U6cGFzcw=="}, 401, `Bearer realm="api"`},
		{"empty bearer", []string{"Bearer "}, 401, `Bearer realm="api"`},
		{"two headers", []string{"Bearer " + good, "Bearer " + good}, 400, `error="invalid_request"`},
		{"unknown token", []string{"Bearer cat_" + strings.Repeat("A", 43)}, 401, `error="invalid_token"`},
		{"malformed token", []string{"Bearer not-a-token"}, 401, `error="invalid_token"`},
		{"refresh token as bearer", []string{"Bearer " + refresh}, 401, `error="invalid_token"`},
		{"expired token", []string{"Bearer " + expired}, 401, `error="invalid_token"`},
		{"missing scope", []string{"Bearer " + narrow}, 403, `error="insufficient_scope", scope="read write"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, h := range tc.headers {
				r.Header.Add("Authorization", h)
			}
			tok, d := v.Check(r)
			if tc.status == 0 {
				if d != nil {
					t.Fatalf("denied: %+v", d)
				}
				if tok.Subject != "alice" {
					t.Fatalf("token = %+v", tok)
				}
				return
			}
			if d == nil {
				t.Fatalf("passed, want %d", tc.status)
			}
			if d.Status != tc.status || !strings.Contains(d.Challenge, tc.challenge) || !strings.HasPrefix(d.Challenge, `Bearer realm="api"`) {
				t.Fatalf("got %d %q, want %d containing %q", d.Status, d.Challenge, tc.status, tc.challenge)
			}
		})
	}
}

func TestStoreOutageIs503(t *testing.T) {
	v, f, issue := setup(t)
	raw := issue("", time.Hour)
	f.err = stores.Unavailable(errors.New("connection refused"))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+raw)
	tok, d := v.Check(r)
	if tok != nil || d == nil || d.Status != http.StatusServiceUnavailable {
		t.Fatalf("outage gave token %v denial %+v, want 503", tok, d)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	h := token.NewHasher([]byte("k"))
	f := &fakeTokens{}
	for _, cfg := range []Config{
		{Hasher: h},
		{Tokens: f},
		{Tokens: f, Hasher: h, Realm: `a"b`},
		{Tokens: f, Hasher: h, Scopes: []string{"has space"}},
		{Tokens: f, Hasher: h, Scopes: []string{""}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestHasScope(t *testing.T) {
	for _, tc := range []struct {
		list, want string
		ok         bool
	}{
		{"read write", "read", true},
		{"read write", "write", true},
		{"read write", "rea", false},
		{"reader", "read", false},
		{"", "read", false},
		{"read", "read", true},
	} {
		if got := HasScope(tc.list, tc.want); got != tc.ok {
			t.Errorf("HasScope(%q, %q) = %v", tc.list, tc.want, got)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	v, _, issue := setup(b, "read")
	raw := issue("read write", time.Hour)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		for pb.Next() {
			if _, d := v.Check(r); d != nil {
				b.Fatal(d.Err)
			}
		}
	})
}

// deadlineTokens records whether lookups carried a deadline.
type deadlineTokens struct {
	fakeTokens
	hadDeadline bool
}

func (d *deadlineTokens) LookupToken(ctx context.Context, kind stores.Kind, key string) (*stores.Token, error) {
	_, d.hadDeadline = ctx.Deadline()
	return nil, stores.ErrNotFound
}

type inProcessTokens struct{ deadlineTokens }

func (*inProcessTokens) InProcess() {}

func TestLookupDeadline(t *testing.T) {
	raw, _ := token.New(token.AccessPrefix)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+raw)
	h := token.NewHasher([]byte("k"))

	remote := &deadlineTokens{}
	v, _ := New(Config{Tokens: remote, Hasher: h})
	v.Check(r)
	if !remote.hadDeadline {
		t.Error("a remote store's lookup had no deadline")
	}
	local := &inProcessTokens{}
	v, _ = New(Config{Tokens: local, Hasher: h})
	v.Check(r)
	if local.hadDeadline {
		t.Error("an in-process store's lookup got a deadline timer")
	}
}

// inProcessFake is fakeTokens declaring itself in-process, as the cache
// store does: the guard then sets no deadline.
type inProcessFake struct{ *fakeTokens }

func (inProcessFake) InProcess() {}

func BenchmarkCheckInProcess(b *testing.B) {
	_, f, issue := setup(b, "read")
	raw := issue("read write", time.Hour)
	v, err := New(Config{Tokens: inProcessFake{f}, Hasher: token.NewHasher([]byte("test secret")), Scopes: []string{"read"}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		for pb.Next() {
			if _, d := v.Check(r); d != nil {
				b.Fatal(d.Err)
			}
		}
	})
}

// TestClientScopes checks the registration hook: a token of a client that
// is no longer registered is invalid, a required scope its client lost is
// missing, and the check allocates nothing.
func TestClientScopes(t *testing.T) {
	registered := map[string]map[string]bool{"c": {"read": true}}
	_, f, issue := setup(t)
	v, err := New(Config{Tokens: f, Hasher: token.NewHasher([]byte("test secret")), Scopes: []string{"read"},
		ClientScopes: func(id string) (map[string]bool, bool) { s, ok := registered[id]; return s, ok }})
	if err != nil {
		t.Fatal(err)
	}
	vw, _ := New(Config{Tokens: f, Hasher: token.NewHasher([]byte("test secret")), Scopes: []string{"write"},
		ClientScopes: func(id string) (map[string]bool, bool) { s, ok := registered[id]; return s, ok }})
	raw := issue("read write", time.Hour)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+raw)
	if _, d := v.Check(r); d != nil {
		t.Fatalf("registered client: %v", d.Err)
	}
	plain, _ := New(Config{Tokens: f, Hasher: token.NewHasher([]byte("test secret")), Scopes: []string{"read"}})
	// The race detector's own allocations make counts wobble by one.
	if with, without := testing.AllocsPerRun(100, func() { v.Check(r) }), testing.AllocsPerRun(100, func() { plain.Check(r) }); with > without+raceSlack {
		t.Errorf("Check allocates %v times with the hook, %v without", with, without)
	}
	// write is in the token but no longer registered for the client.
	if _, d := vw.Check(r); d == nil || d.Status != 403 || !errors.Is(d.Err, ErrInsufficientScope) {
		t.Errorf("dropped scope: %+v, want 403 insufficient_scope", d)
	}
	delete(registered, "c")
	if _, d := v.Check(r); d == nil || d.Status != 401 || !strings.Contains(d.Challenge, `error="invalid_token"`) {
		t.Errorf("removed client: %+v, want 401 invalid_token", d)
	}
}

// BenchmarkCheckInProcessClientScopes is BenchmarkCheckInProcess with the
// registration hook the adapter installs: one more map lookup per request.
func BenchmarkCheckInProcessClientScopes(b *testing.B) {
	_, f, issue := setup(b, "read")
	raw := issue("read write", time.Hour)
	registered := map[string]map[string]bool{"c": {"read": true, "write": true}}
	v, err := New(Config{Tokens: inProcessFake{f}, Hasher: token.NewHasher([]byte("test secret")), Scopes: []string{"read"},
		ClientScopes: func(id string) (map[string]bool, bool) { s, ok := registered[id]; return s, ok }})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		for pb.Next() {
			if _, d := v.Check(r); d != nil {
				b.Fatal(d.Err)
			}
		}
	})
}

func TestCheckAudience(t *testing.T) {
	h := token.NewHasher([]byte("test secret"))
	f := &fakeTokens{tokens: map[string]*stores.Token{}}
	// A guard for api-a, whose default audience is not among its own.
	v, err := New(Config{Tokens: f, Hasher: h, Audience: func(aud []string) bool {
		return aud != nil && slices.Contains(aud, "https://api-a.example")
	}})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(aud ...string) string {
		raw, _ := token.New(token.AccessPrefix)
		f.tokens[h.Key(raw)] = &stores.Token{Kind: stores.AccessToken, ClientID: "c", Audience: aud, ExpiresAt: time.Now().Add(time.Hour)}
		return raw
	}
	for _, tc := range []struct {
		name   string
		raw    string
		status int
	}{
		{"for api-a", issue("https://api-a.example"), 0},
		{"for api-a and api-b", issue("https://api-b.example", "https://api-a.example"), 0},
		{"for api-b", issue("https://api-b.example"), 401},
		{"for the default audience", issue(), 401},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+tc.raw)
		_, d := v.Check(r)
		if got := 0; d != nil {
			got = d.Status
			if got != tc.status {
				t.Errorf("%s: %d, want %d", tc.name, got, tc.status)
			}
		} else if tc.status != 0 {
			t.Errorf("%s: admitted, want %d", tc.name, tc.status)
		}
	}
}
