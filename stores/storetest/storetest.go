// Package storetest is the contract every store backend passes. A backend's
// test calls Run with a function that returns an empty store.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// Options describe what a backend does differently within the contract.
type Options struct {
	// SelfExpiring is set for backends that drop expired records on their
	// own (Cassandra's TTL): PurgeExpired* may then report fewer deletions
	// than there were expired records, but never more.
	SelfExpiring bool
}

// Run runs the contract suite. newStore must return an empty store; it is
// called once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) stores.Store, opts Options) {
	t.Run("CodeRoundTrip", func(t *testing.T) { testCodeRoundTrip(t, newStore(t)) })
	t.Run("CodeSingleUseUnderConcurrency", func(t *testing.T) { testCodeSingleUse(t, newStore(t)) })
	t.Run("CodeExpiry", func(t *testing.T) { testCodeExpiry(t, newStore(t)) })
	t.Run("TokenRoundTrip", func(t *testing.T) { testTokenRoundTrip(t, newStore(t)) })
	t.Run("TokenExpiry", func(t *testing.T) { testTokenExpiry(t, newStore(t)) })
	t.Run("RefreshRotationUnderConcurrency", func(t *testing.T) { testRefreshRotation(t, newStore(t)) })
	t.Run("RevokeToken", func(t *testing.T) { testRevokeToken(t, newStore(t)) })
	t.Run("RevokeFamily", func(t *testing.T) { testRevokeFamily(t, newStore(t)) })
	t.Run("RevokedFamilyMarker", func(t *testing.T) { testRevokedFamilyMarker(t, newStore(t)) })
	t.Run("RevokedFamilyMarkerExpiry", func(t *testing.T) { testRevokedFamilyMarkerExpiry(t, newStore(t)) })
	t.Run("RevokeFamilyRacesInsert", func(t *testing.T) { testRevokeFamilyRace(t, newStore(t)) })
	t.Run("PurgeExpired", func(t *testing.T) { testPurge(t, newStore(t), opts) })
	t.Run("RevokeSubject", func(t *testing.T) { testRevokeSubject(t, newStore(t)) })
	t.Run("SigningKeys", func(t *testing.T) { testSigningKeys(t, newStore(t)) })
	t.Run("Clients", func(t *testing.T) { testClients(t, newStore(t)) })
	t.Run("GrantBindings", func(t *testing.T) { testGrantBindings(t, newStore(t)) })
	t.Run("SingleUse", func(t *testing.T) { testSingleUse(t, newStore(t)) })
	t.Run("SingleUseUnderConcurrency", func(t *testing.T) { testSingleUseRace(t, newStore(t)) })
	t.Run("SingleUseExpiry", func(t *testing.T) { testSingleUseExpiry(t, newStore(t), opts) })
}

// Key returns a random store key shaped like a real one (64 hex digits).
func Key() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// now is truncated to milliseconds, the coarsest precision a store keeps.
func now() time.Time { return time.Now().Truncate(time.Millisecond) }

func newCode(ttl time.Duration) *stores.Code {
	n := now()
	return &stores.Code{
		Key:                 Key(),
		ClientID:            "client-" + Key()[:8],
		Subject:             "alice",
		RedirectURI:         "http://127.0.0.1:9/callback?x=1",
		Scope:               "read write",
		CodeChallenge:       "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		CodeChallengeMethod: "S256",
		Family:              "fam-" + Key()[:16],
		IssuedAt:            n,
		ExpiresAt:           n.Add(ttl),
	}
}

func newToken(kind stores.Kind, family string, ttl time.Duration) *stores.Token {
	n := now()
	return &stores.Token{
		Key:       Key(),
		Kind:      kind,
		ClientID:  "client-1",
		Subject:   "alice",
		Scope:     "read",
		Family:    family,
		IssuedAt:  n,
		ExpiresAt: n.Add(ttl),
	}
}

func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -time.Millisecond && d < time.Millisecond
}

func checkCode(t *testing.T, got, want *stores.Code) {
	t.Helper()
	if got == nil {
		t.Fatal("got nil code")
	}
	if got.Key != want.Key || got.ClientID != want.ClientID || got.Subject != want.Subject ||
		got.RedirectURI != want.RedirectURI || got.Scope != want.Scope ||
		got.CodeChallenge != want.CodeChallenge || got.CodeChallengeMethod != want.CodeChallengeMethod ||
		got.Family != want.Family || !slices.Equal(got.Audience, want.Audience) || got.JKT != want.JKT {
		t.Fatalf("code fields differ:\n got  %+v\n want %+v", got, want)
	}
	if !sameTime(got.IssuedAt, want.IssuedAt) || !sameTime(got.ExpiresAt, want.ExpiresAt) {
		t.Fatalf("code times differ: got %v/%v want %v/%v", got.IssuedAt, got.ExpiresAt, want.IssuedAt, want.ExpiresAt)
	}
	checkOIDC(t, "code", got.OIDC, want.OIDC)
}

func checkToken(t *testing.T, got, want *stores.Token) {
	t.Helper()
	if got == nil {
		t.Fatal("got nil token")
	}
	if got.Key != want.Key || got.Kind != want.Kind || got.ClientID != want.ClientID ||
		got.Subject != want.Subject || got.Scope != want.Scope || got.Family != want.Family ||
		!slices.Equal(got.Audience, want.Audience) || got.JKT != want.JKT {
		t.Fatalf("token fields differ:\n got  %+v\n want %+v", got, want)
	}
	if !sameTime(got.IssuedAt, want.IssuedAt) || !sameTime(got.ExpiresAt, want.ExpiresAt) {
		t.Fatalf("token times differ: got %v/%v want %v/%v", got.IssuedAt, got.ExpiresAt, want.IssuedAt, want.ExpiresAt)
	}
	checkOIDC(t, "token", got.OIDC, want.OIDC)
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func testCodeRoundTrip(t *testing.T, s stores.Store) {
	c := newCode(time.Minute)
	c.Subject = "ünïcode üser"
	c.Audience = []string{"https://api.example/v1", "urn:example:other"}
	if err := s.InsertCode(ctx(t), c); err != nil {
		t.Fatalf("InsertCode: %v", err)
	}
	got, err := s.ConsumeCode(ctx(t), c.Key)
	if err != nil {
		t.Fatalf("ConsumeCode: %v", err)
	}
	checkCode(t, got, c)

	_, err = s.ConsumeCode(ctx(t), Key())
	wantErr(t, "consume of an unknown code", err, stores.ErrNotFound)

	// A code without PKCE and without redirect URI round-trips its empties.
	bare := newCode(time.Minute)
	bare.CodeChallenge, bare.CodeChallengeMethod, bare.RedirectURI, bare.Scope = "", "", "", ""
	if err := s.InsertCode(ctx(t), bare); err != nil {
		t.Fatalf("InsertCode: %v", err)
	}
	got, err = s.ConsumeCode(ctx(t), bare.Key)
	if err != nil {
		t.Fatalf("ConsumeCode: %v", err)
	}
	checkCode(t, got, bare)
}

func testCodeSingleUse(t *testing.T, s stores.Store) {
	c := newCode(time.Minute)
	if err := s.InsertCode(ctx(t), c); err != nil {
		t.Fatalf("InsertCode: %v", err)
	}
	const n = 16
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		winners  int
		consumed int
		other    []error
	)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got, err := s.ConsumeCode(context.Background(), c.Key)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners++
			case errors.Is(err, stores.ErrConsumed):
				consumed++
				if got == nil || got.Family != c.Family {
					other = append(other, fmt.Errorf("ErrConsumed without the code's family: %+v", got))
				}
			default:
				other = append(other, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if winners != 1 || consumed != n-1 || len(other) > 0 {
		t.Fatalf("%d concurrent redemptions: %d winners, %d ErrConsumed, other errors %v; want exactly 1 winner", n, winners, consumed, other)
	}
	// And later, sequentially, still consumed.
	got, err := s.ConsumeCode(ctx(t), c.Key)
	wantErr(t, "third redemption", err, stores.ErrConsumed)
	checkCode(t, got, c)
}

func testCodeExpiry(t *testing.T, s stores.Store) {
	c := newCode(-time.Second)
	if err := s.InsertCode(ctx(t), c); err != nil {
		t.Fatalf("InsertCode of an expired code: %v", err)
	}
	_, err := s.ConsumeCode(ctx(t), c.Key)
	wantErr(t, "consume of an expired code", err, stores.ErrNotFound)

	short := newCode(1200 * time.Millisecond)
	if err := s.InsertCode(ctx(t), short); err != nil {
		t.Fatalf("InsertCode: %v", err)
	}
	time.Sleep(2 * time.Second)
	_, err = s.ConsumeCode(ctx(t), short.Key)
	wantErr(t, "consume of a code after its lifetime", err, stores.ErrNotFound)
}

func testTokenRoundTrip(t *testing.T, s stores.Store) {
	fam := "fam-" + Key()[:16]
	at := newToken(stores.AccessToken, fam, time.Hour)
	rt := newToken(stores.RefreshToken, fam, 12*time.Hour)
	// RFC 8707: the access token is for one resource, its refresh token
	// keeps the grant's two.
	at.Audience = []string{"https://api.example/v1"}
	rt.Audience = []string{"https://api.example/v1", "urn:example:other"}
	if err := s.InsertTokens(ctx(t), at, rt); err != nil {
		t.Fatalf("InsertTokens: %v", err)
	}
	got, err := s.LookupToken(ctx(t), stores.AccessToken, at.Key)
	if err != nil {
		t.Fatalf("LookupToken(access): %v", err)
	}
	checkToken(t, got, at)
	got, err = s.LookupToken(ctx(t), stores.RefreshToken, rt.Key)
	if err != nil {
		t.Fatalf("LookupToken(refresh): %v", err)
	}
	checkToken(t, got, rt)

	// The kind is part of the key space: an access token is no refresh token.
	_, err = s.LookupToken(ctx(t), stores.RefreshToken, at.Key)
	wantErr(t, "access token looked up as refresh token", err, stores.ErrNotFound)
	_, err = s.ConsumeRefreshToken(ctx(t), at.Key)
	wantErr(t, "access token consumed as refresh token", err, stores.ErrNotFound)
	_, err = s.LookupToken(ctx(t), stores.AccessToken, Key())
	wantErr(t, "unknown token", err, stores.ErrNotFound)

	// A client_credentials token has no subject and may have no scope.
	cc := newToken(stores.AccessToken, "fam-"+Key()[:16], time.Hour)
	cc.Subject, cc.Scope = "", ""
	if err := s.InsertTokens(ctx(t), cc); err != nil {
		t.Fatalf("InsertTokens: %v", err)
	}
	got, err = s.LookupToken(ctx(t), stores.AccessToken, cc.Key)
	if err != nil {
		t.Fatalf("LookupToken: %v", err)
	}
	checkToken(t, got, cc)
}

func testTokenExpiry(t *testing.T, s stores.Store) {
	fam := "fam-" + Key()[:16]
	at := newToken(stores.AccessToken, fam, -time.Second)
	rt := newToken(stores.RefreshToken, fam, -time.Second)
	if err := s.InsertTokens(ctx(t), at, rt); err != nil {
		t.Fatalf("InsertTokens of expired tokens: %v", err)
	}
	_, err := s.LookupToken(ctx(t), stores.AccessToken, at.Key)
	wantErr(t, "lookup of an expired access token", err, stores.ErrNotFound)
	_, err = s.ConsumeRefreshToken(ctx(t), rt.Key)
	wantErr(t, "consume of an expired refresh token", err, stores.ErrNotFound)

	short := newToken(stores.AccessToken, fam, 1200*time.Millisecond)
	if err := s.InsertTokens(ctx(t), short); err != nil {
		t.Fatalf("InsertTokens: %v", err)
	}
	if _, err := s.LookupToken(ctx(t), stores.AccessToken, short.Key); err != nil {
		t.Fatalf("lookup of a live token: %v", err)
	}
	time.Sleep(2 * time.Second)
	_, err = s.LookupToken(ctx(t), stores.AccessToken, short.Key)
	wantErr(t, "lookup of a token after its lifetime", err, stores.ErrNotFound)
}

func testRefreshRotation(t *testing.T, s stores.Store) {
	fam := "fam-" + Key()[:16]
	rt := newToken(stores.RefreshToken, fam, time.Hour)
	if err := s.InsertTokens(ctx(t), rt); err != nil {
		t.Fatalf("InsertTokens: %v", err)
	}
	const n = 16
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		winners  int
		consumed int
		other    []error
	)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got, err := s.ConsumeRefreshToken(context.Background(), rt.Key)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners++
				if got == nil || got.Family != fam {
					other = append(other, fmt.Errorf("winner got %+v", got))
				}
			case errors.Is(err, stores.ErrConsumed):
				consumed++
				if got == nil || got.Family != fam {
					other = append(other, fmt.Errorf("ErrConsumed without the token's family: %+v", got))
				}
			default:
				other = append(other, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if winners != 1 || consumed != n-1 || len(other) > 0 {
		t.Fatalf("%d concurrent refreshes: %d winners, %d ErrConsumed, other errors %v; want exactly 1 winner", n, winners, consumed, other)
	}
	_, err := s.LookupToken(ctx(t), stores.RefreshToken, rt.Key)
	wantErr(t, "lookup of a rotated refresh token", err, stores.ErrNotFound)
}

func testRevokeToken(t *testing.T, s stores.Store) {
	fam := "fam-" + Key()[:16]
	at := newToken(stores.AccessToken, fam, time.Hour)
	rt := newToken(stores.RefreshToken, fam, time.Hour)
	if err := s.InsertTokens(ctx(t), at, rt); err != nil {
		t.Fatalf("InsertTokens: %v", err)
	}
	if err := s.RevokeToken(ctx(t), stores.AccessToken, at.Key); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	_, err := s.LookupToken(ctx(t), stores.AccessToken, at.Key)
	wantErr(t, "lookup of a revoked token", err, stores.ErrNotFound)
	if _, err := s.LookupToken(ctx(t), stores.RefreshToken, rt.Key); err != nil {
		t.Fatalf("revoking the access token touched the refresh token: %v", err)
	}
	if err := s.RevokeToken(ctx(t), stores.RefreshToken, rt.Key); err != nil {
		t.Fatalf("RevokeToken(refresh): %v", err)
	}
	_, err = s.ConsumeRefreshToken(ctx(t), rt.Key)
	wantErr(t, "consume of a revoked refresh token", err, stores.ErrNotFound)
	if err := s.RevokeToken(ctx(t), stores.AccessToken, Key()); err != nil {
		t.Fatalf("revoking an unknown token must succeed (RFC 7009 §2.2): %v", err)
	}
}

func testRevokeFamily(t *testing.T, s stores.Store) {
	famA, famB := "fam-a-"+Key()[:16], "fam-b-"+Key()[:16]
	oldRT := newToken(stores.RefreshToken, famA, time.Hour)
	if err := s.InsertTokens(ctx(t), oldRT); err != nil {
		t.Fatalf("InsertTokens: %v", err)
	}
	if _, err := s.ConsumeRefreshToken(ctx(t), oldRT.Key); err != nil {
		t.Fatalf("ConsumeRefreshToken: %v", err)
	}
	var a []*stores.Token
	for i := 0; i < 3; i++ {
		a = append(a, newToken(stores.AccessToken, famA, time.Hour))
	}
	a = append(a, newToken(stores.RefreshToken, famA, time.Hour))
	b := []*stores.Token{newToken(stores.AccessToken, famB, time.Hour), newToken(stores.RefreshToken, famB, time.Hour)}
	if err := s.InsertTokens(ctx(t), append(a, b...)...); err != nil {
		t.Fatalf("InsertTokens: %v", err)
	}
	if err := s.RevokeFamily(ctx(t), famA, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("RevokeFamily: %v", err)
	}
	for _, tok := range a {
		_, err := s.LookupToken(ctx(t), tok.Kind, tok.Key)
		wantErr(t, "lookup of a token of a revoked family", err, stores.ErrNotFound)
	}
	_, err := s.ConsumeRefreshToken(ctx(t), oldRT.Key)
	wantErr(t, "consume of a rotated refresh token of a revoked family", err, stores.ErrNotFound)
	for _, tok := range b {
		got, err := s.LookupToken(ctx(t), tok.Kind, tok.Key)
		if err != nil {
			t.Fatalf("token of another family was revoked too: %v", err)
		}
		checkToken(t, got, tok)
	}
	if err := s.RevokeFamily(ctx(t), "fam-unknown-"+Key()[:8], time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("RevokeFamily of an unknown family: %v", err)
	}

	// Tokens without a family (client_credentials) are in none: revoking
	// the empty family leaves them alone.
	lone := []*stores.Token{newToken(stores.AccessToken, "", time.Hour), newToken(stores.AccessToken, "", time.Hour)}
	if err := s.InsertTokens(ctx(t), lone...); err != nil {
		t.Fatalf("InsertTokens without family: %v", err)
	}
	if err := s.RevokeFamily(ctx(t), "", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("RevokeFamily of the empty family: %v", err)
	}
	for _, tok := range append(lone, b...) {
		got, err := s.LookupToken(ctx(t), tok.Kind, tok.Key)
		if err != nil {
			t.Fatalf("RevokeFamily(\"\") revoked a token: %v", err)
		}
		checkToken(t, got, tok)
	}
}

func testPurge(t *testing.T, s stores.Store, opts Options) {
	const expired, batch = 2500, 1000
	var live []*stores.Token
	var liveCodes []*stores.Code
	for i := 0; i < expired; i++ {
		if err := s.InsertCode(ctx(t), newCode(-time.Minute)); err != nil {
			t.Fatalf("InsertCode: %v", err)
		}
	}
	toks := make([]*stores.Token, 0, 100)
	for i := 0; i < expired; i++ {
		kind := stores.AccessToken
		if i%2 == 1 {
			kind = stores.RefreshToken
		}
		toks = append(toks, newToken(kind, "fam-"+Key()[:16], -time.Minute))
		if len(toks) == cap(toks) {
			if err := s.InsertTokens(ctx(t), toks...); err != nil {
				t.Fatalf("InsertTokens: %v", err)
			}
			toks = toks[:0]
		}
	}
	for i := 0; i < 5; i++ {
		c := newCode(time.Hour)
		liveCodes = append(liveCodes, c)
		if err := s.InsertCode(ctx(t), c); err != nil {
			t.Fatalf("InsertCode: %v", err)
		}
		at := newToken(stores.AccessToken, "fam-"+Key()[:16], time.Hour)
		rt := newToken(stores.RefreshToken, at.Family, time.Hour)
		live = append(live, at, rt)
		if err := s.InsertTokens(ctx(t), at, rt); err != nil {
			t.Fatalf("InsertTokens: %v", err)
		}
	}

	check := func(what string, n int64, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if opts.SelfExpiring {
			if n < 0 || n > expired {
				t.Fatalf("%s removed %d, want between 0 and %d", what, n, expired)
			}
		} else if n != expired {
			t.Fatalf("%s removed %d, want %d", what, n, expired)
		}
	}
	n, err := s.PurgeExpiredCodes(ctx(t), batch)
	check("PurgeExpiredCodes", n, err)
	n, err = s.PurgeExpiredTokens(ctx(t), batch)
	check("PurgeExpiredTokens", n, err)

	for _, tok := range live {
		if _, err := s.LookupToken(ctx(t), tok.Kind, tok.Key); err != nil {
			t.Fatalf("purge removed a live %s: %v", tok.Kind, err)
		}
	}
	for _, c := range liveCodes {
		if _, err := s.ConsumeCode(ctx(t), c.Key); err != nil {
			t.Fatalf("purge removed a live code: %v", err)
		}
	}
	if n, err := s.PurgeExpiredCodes(ctx(t), batch); err != nil || n != 0 {
		t.Fatalf("second PurgeExpiredCodes = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.PurgeExpiredTokens(ctx(t), batch); err != nil || n != 0 {
		t.Fatalf("second PurgeExpiredTokens = %d, %v; want 0, nil", n, err)
	}
}

// wantDead checks that none of toks validates or can be redeemed.
func wantDead(t *testing.T, what string, s stores.Store, toks ...*stores.Token) {
	t.Helper()
	for _, tok := range toks {
		if _, err := s.LookupToken(ctx(t), tok.Kind, tok.Key); !errors.Is(err, stores.ErrNotFound) {
			t.Fatalf("%s: lookup of a %s gave %v, want ErrNotFound", what, tok.Kind, err)
		}
		if tok.Kind == stores.RefreshToken {
			if _, err := s.ConsumeRefreshToken(ctx(t), tok.Key); !errors.Is(err, stores.ErrNotFound) {
				t.Fatalf("%s: refresh of a refresh token gave %v, want ErrNotFound", what, err)
			}
		}
	}
}

func wantLive(t *testing.T, what string, s stores.Store, toks ...*stores.Token) {
	t.Helper()
	for _, tok := range toks {
		got, err := s.LookupToken(ctx(t), tok.Kind, tok.Key)
		if err != nil {
			t.Fatalf("%s: lookup of a %s: %v", what, tok.Kind, err)
		}
		checkToken(t, got, tok)
	}
}

// A revoked family's marker refuses every later insert into the family
// (ErrRevoked, nothing validates) and leaves other families, family-less
// tokens and the empty family alone.
func testRevokedFamilyMarker(t *testing.T, s stores.Store) {
	famA, famB := "fam-a-"+Key()[:16], "fam-b-"+Key()[:16]
	first := []*stores.Token{newToken(stores.AccessToken, famA, time.Hour), newToken(stores.RefreshToken, famA, time.Hour)}
	if err := s.InsertTokens(ctx(t), first...); err != nil {
		t.Fatalf("InsertTokens: %v", err)
	}
	if err := s.RevokeFamily(ctx(t), famA, now().Add(time.Hour)); err != nil {
		t.Fatalf("RevokeFamily: %v", err)
	}
	wantDead(t, "token of the revoked family", s, first...)

	// A redemption that finishes after the revocation.
	late := []*stores.Token{newToken(stores.AccessToken, famA, time.Hour), newToken(stores.RefreshToken, famA, 12*time.Hour)}
	wantErr(t, "InsertTokens into a revoked family", s.InsertTokens(ctx(t), late...), stores.ErrRevoked)
	wantDead(t, "token inserted into a revoked family", s, late...)
	lone := newToken(stores.RefreshToken, famA, time.Hour)
	wantErr(t, "second InsertTokens into a revoked family", s.InsertTokens(ctx(t), lone), stores.ErrRevoked)
	wantDead(t, "token inserted into a revoked family", s, lone)

	// A family revoked before it had any token is marked all the same.
	famC := "fam-c-" + Key()[:16]
	if err := s.RevokeFamily(ctx(t), famC, now().Add(time.Hour)); err != nil {
		t.Fatalf("RevokeFamily of a family without tokens: %v", err)
	}
	early := []*stores.Token{newToken(stores.AccessToken, famC, time.Hour), newToken(stores.RefreshToken, famC, time.Hour)}
	wantErr(t, "InsertTokens into a family revoked before use", s.InsertTokens(ctx(t), early...), stores.ErrRevoked)
	wantDead(t, "token of a family revoked before use", s, early...)

	// Other families and family-less tokens are unaffected.
	other := []*stores.Token{newToken(stores.AccessToken, famB, time.Hour), newToken(stores.RefreshToken, famB, time.Hour)}
	if err := s.InsertTokens(ctx(t), other...); err != nil {
		t.Fatalf("InsertTokens into another family: %v", err)
	}
	wantLive(t, "token of another family", s, other...)

	// Revoking the empty family records nothing: family-less tokens
	// (client_credentials) are still issued.
	if err := s.RevokeFamily(ctx(t), "", now().Add(time.Hour)); err != nil {
		t.Fatalf("RevokeFamily of the empty family: %v", err)
	}
	free := []*stores.Token{newToken(stores.AccessToken, "", time.Hour), newToken(stores.AccessToken, "", time.Hour)}
	if err := s.InsertTokens(ctx(t), free...); err != nil {
		t.Fatalf("InsertTokens without family after RevokeFamily(\"\"): %v", err)
	}
	wantLive(t, "family-less token", s, free...)
	wantLive(t, "token of another family", s, other...)
}

// The marker lives until the time RevokeFamily was given, the greatest of
// several, and not after.
func testRevokedFamilyMarkerExpiry(t *testing.T, s stores.Store) {
	short, long := "fam-short-"+Key()[:16], "fam-long-"+Key()[:16]
	if err := s.RevokeFamily(ctx(t), short, now().Add(1200*time.Millisecond)); err != nil {
		t.Fatalf("RevokeFamily: %v", err)
	}
	if err := s.RevokeFamily(ctx(t), long, now().Add(time.Hour)); err != nil {
		t.Fatalf("RevokeFamily: %v", err)
	}
	// A second, shorter revocation does not shorten the first.
	if err := s.RevokeFamily(ctx(t), long, now().Add(1200*time.Millisecond)); err != nil {
		t.Fatalf("RevokeFamily again: %v", err)
	}
	at := newToken(stores.AccessToken, short, time.Hour)
	wantErr(t, "InsertTokens while the marker lives", s.InsertTokens(ctx(t), at), stores.ErrRevoked)
	time.Sleep(2 * time.Second)

	after := []*stores.Token{newToken(stores.AccessToken, short, time.Hour), newToken(stores.RefreshToken, short, time.Hour)}
	if err := s.InsertTokens(ctx(t), after...); err != nil {
		t.Fatalf("InsertTokens after the marker expired: %v", err)
	}
	wantLive(t, "token inserted after the marker expired", s, after...)
	still := newToken(stores.AccessToken, long, time.Hour)
	wantErr(t, "InsertTokens into a family re-revoked for less time", s.InsertTokens(ctx(t), still), stores.ErrRevoked)
	wantDead(t, "token of a family re-revoked for less time", s, still)
}

// Each family gets an InsertTokens and a RevokeFamily at once. Whichever
// wins, afterwards no token of any family validates: the insert either
// returned ErrRevoked or its tokens were deleted by the revocation.
func testRevokeFamilyRace(t *testing.T, s stores.Store) {
	const families = 48
	type grant struct {
		fam  string
		toks []*stores.Token
		err  error
	}
	grants := make([]*grant, families)
	for i := range grants {
		fam := fmt.Sprintf("fam-race-%d-%s", i, Key()[:12])
		grants[i] = &grant{fam: fam, toks: []*stores.Token{
			newToken(stores.AccessToken, fam, time.Hour), newToken(stores.RefreshToken, fam, time.Hour),
		}}
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		revokeErr []error
	)
	start := make(chan struct{})
	for _, g := range grants {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			g.err = s.InsertTokens(context.Background(), g.toks...)
		}()
		go func() {
			defer wg.Done()
			<-start
			if err := s.RevokeFamily(context.Background(), g.fam, time.Now().Add(time.Hour)); err != nil {
				mu.Lock()
				revokeErr = append(revokeErr, err)
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(revokeErr) > 0 {
		t.Fatalf("RevokeFamily failed: %v", revokeErr)
	}
	refused := 0
	for _, g := range grants {
		switch {
		case errors.Is(g.err, stores.ErrRevoked):
			refused++
		case g.err != nil:
			t.Fatalf("InsertTokens racing RevokeFamily: %v, want nil or ErrRevoked", g.err)
		}
		wantDead(t, "token of a family revoked during its insert", s, g.toks...)
	}
	t.Logf("%d of %d inserts lost the race and were refused", refused, families)
}
