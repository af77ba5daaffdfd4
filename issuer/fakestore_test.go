package issuer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeStore is an in-memory stores.Store with the documented semantics:
// single-use codes and refresh tokens, expiry as absence, family
// revocation. fail makes chosen operations report an outage.
type fakeStore struct {
	now func() time.Time

	mu     sync.Mutex
	codes  map[string]*fakeCode
	tokens map[tokenKey]*fakeToken
	// revoked holds revoked-family markers and their end of life.
	revoked map[string]time.Time
	fail    map[string]bool // operation name -> fail with stores.Unavailable
	block   bool            // every call waits for ctx to end
	// beforeInsert, when set, runs before InsertTokens stores anything.
	beforeInsert func()
}

type fakeCode struct {
	c    stores.Code
	used bool
}

type tokenKey struct {
	kind stores.Kind
	key  string
}

type fakeToken struct {
	t        stores.Token
	consumed bool
}

var errBackendDown = errors.New("connection refused")

func newFakeStore(now func() time.Time) *fakeStore {
	return &fakeStore{now: now, codes: map[string]*fakeCode{}, tokens: map[tokenKey]*fakeToken{}, fail: map[string]bool{}}
}

// setFail makes the named operations fail ("*" for all).
func (f *fakeStore) setFail(ops ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = map[string]bool{}
	for _, op := range ops {
		f.fail[op] = true
	}
}

func (f *fakeStore) setBlock(b bool) {
	f.mu.Lock()
	f.block = b
	f.mu.Unlock()
}

// enter takes the lock unless op is set to fail; callers must unlock on nil.
func (f *fakeStore) enter(ctx context.Context, op string) error {
	f.mu.Lock()
	if f.block {
		f.mu.Unlock()
		<-ctx.Done()
		return stores.Unavailable(ctx.Err())
	}
	if f.fail[op] || f.fail["*"] {
		f.mu.Unlock()
		return stores.Unavailable(errBackendDown)
	}
	if err := ctx.Err(); err != nil {
		f.mu.Unlock()
		return stores.Unavailable(err)
	}
	return nil
}

func (f *fakeStore) InsertCode(ctx context.Context, c *stores.Code) error {
	if err := f.enter(ctx, "InsertCode"); err != nil {
		return err
	}
	defer f.mu.Unlock()
	f.codes[c.Key] = &fakeCode{c: *c}
	return nil
}

func (f *fakeStore) ConsumeCode(ctx context.Context, key string) (*stores.Code, error) {
	if err := f.enter(ctx, "ConsumeCode"); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	fc := f.codes[key]
	if fc == nil || !f.now().Before(fc.c.ExpiresAt) {
		return nil, stores.ErrNotFound
	}
	c := fc.c
	if fc.used {
		return &c, stores.ErrConsumed
	}
	fc.used = true
	return &c, nil
}

func (f *fakeStore) PurgeExpiredCodes(ctx context.Context, batch int) (int64, error) {
	return 0, nil
}

func (f *fakeStore) InsertTokens(ctx context.Context, tokens ...*stores.Token) error {
	f.mu.Lock()
	hook := f.beforeInsert
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err := f.enter(ctx, "InsertTokens"); err != nil {
		return err
	}
	defer f.mu.Unlock()
	for _, t := range tokens {
		if until, ok := f.revoked[t.Family]; ok && t.Family != "" && f.now().Before(until) {
			return stores.ErrRevoked
		}
	}
	for _, t := range tokens {
		f.tokens[tokenKey{t.Kind, t.Key}] = &fakeToken{t: *t}
	}
	return nil
}

func (f *fakeStore) LookupToken(ctx context.Context, kind stores.Kind, key string) (*stores.Token, error) {
	if err := f.enter(ctx, "LookupToken"); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	ft := f.tokens[tokenKey{kind, key}]
	if ft == nil || ft.consumed || !f.now().Before(ft.t.ExpiresAt) {
		return nil, stores.ErrNotFound
	}
	t := ft.t
	return &t, nil
}

func (f *fakeStore) ConsumeRefreshToken(ctx context.Context, key string) (*stores.Token, error) {
	if err := f.enter(ctx, "ConsumeRefreshToken"); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	ft := f.tokens[tokenKey{stores.RefreshToken, key}]
	if ft == nil || !f.now().Before(ft.t.ExpiresAt) {
		return nil, stores.ErrNotFound
	}
	t := ft.t
	if ft.consumed {
		return &t, stores.ErrConsumed
	}
	ft.consumed = true
	return &t, nil
}

func (f *fakeStore) RevokeToken(ctx context.Context, kind stores.Kind, key string) error {
	if err := f.enter(ctx, "RevokeToken"); err != nil {
		return err
	}
	defer f.mu.Unlock()
	delete(f.tokens, tokenKey{kind, key})
	return nil
}

func (f *fakeStore) RevokeFamily(ctx context.Context, family string, until time.Time) error {
	if err := f.enter(ctx, "RevokeFamily"); err != nil {
		return err
	}
	defer f.mu.Unlock()
	if family == "" {
		return nil
	}
	if f.revoked == nil {
		f.revoked = map[string]time.Time{}
	}
	f.revoked[family] = until
	for k, ft := range f.tokens {
		if ft.t.Family == family {
			delete(f.tokens, k)
		}
	}
	return nil
}

func (f *fakeStore) PurgeExpiredTokens(ctx context.Context, batch int) (int64, error) {
	return 0, nil
}

// codeCount and tokenCount report what is stored. codeCount counts
// authorization codes only, not the consent form nonces the issuer also
// keeps in the code store (those have no grant family).
func (f *fakeStore) codeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.codes {
		if c.c.Family != "" {
			n++
		}
	}
	return n
}

func (f *fakeStore) tokenCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tokens)
}

// code returns the stored code with the given key, nil if none.
func (f *fakeStore) code(key string) *stores.Code {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fc := f.codes[key]; fc != nil {
		c := fc.c
		return &c
	}
	return nil
}

var _ stores.Store = (*fakeStore)(nil)
