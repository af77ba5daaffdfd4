package storetest

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// checkOIDC compares OpenID Connect grant state as its stored JSON form
// keeps it: nil stays nil, and claims of strings and lists of strings come
// back equal.
func checkOIDC(t *testing.T, what string, got, want *stores.OIDCGrant) {
	t.Helper()
	if (got == nil) != (want == nil) {
		t.Fatalf("%s OIDC: got %+v, want %+v", what, got, want)
	}
	if got == nil {
		return
	}
	if got.Nonce != want.Nonce || got.SessionID != want.SessionID || !got.AuthTime.Equal(want.AuthTime) {
		t.Fatalf("%s OIDC differs:\n got  %+v\n want %+v", what, got, want)
	}
	// The claims as JSON gives them back: lists are []any.
	var norm map[string]any
	if want.Claims != nil {
		b, err := json.Marshal(want.Claims)
		if err != nil {
			t.Fatalf("claims: %v", err)
		}
		if err := json.Unmarshal(b, &norm); err != nil {
			t.Fatalf("claims: %v", err)
		}
	}
	if len(got.Claims) != len(norm) || (len(norm) > 0 && !reflect.DeepEqual(got.Claims, norm)) {
		t.Fatalf("%s OIDC claims differ:\n got  %#v\n want %#v", what, got.Claims, norm)
	}
}

func oidcGrant(nonce string) *stores.OIDCGrant {
	return &stores.OIDCGrant{
		Nonce:     nonce,
		AuthTime:  time.Unix(1_767_225_600, 0),
		SessionID: "sid-" + Key()[:16],
		Claims: map[string]any{
			"email":          "alice@example.com",
			"email_verified": "true",
			"name":           "Ålice \"quoted\" <b>",
			"groups":         []any{"admins", "ops", "ünïcode"},
			"empty_list":     []any{},
		},
	}
}

// testGrantBindings: the DPoP key thumbprint (RFC 9449) and the OpenID
// Connect state of codes and tokens round-trip through every read, and an
// unbound, non-OpenID record reads back with neither.
func testGrantBindings(t *testing.T, s stores.Store) {
	const jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"

	c := newCode(time.Minute)
	c.JKT = jkt
	c.OIDC = oidcGrant("n-0S6_WzA2Mj")
	if err := s.InsertCode(ctx(t), c); err != nil {
		t.Fatalf("InsertCode: %v", err)
	}
	got, err := s.ConsumeCode(ctx(t), c.Key)
	if err != nil {
		t.Fatalf("ConsumeCode: %v", err)
	}
	checkCode(t, got, c)
	// A replay gets the same record, for the family revocation.
	got, err = s.ConsumeCode(ctx(t), c.Key)
	wantErr(t, "second ConsumeCode", err, stores.ErrConsumed)
	checkCode(t, got, c)

	// An OIDC grant with only a nonce; and neither.
	only := newCode(time.Minute)
	only.OIDC = &stores.OIDCGrant{Nonce: "n"}
	bare := newCode(time.Minute)
	for _, c := range []*stores.Code{only, bare} {
		if err := s.InsertCode(ctx(t), c); err != nil {
			t.Fatalf("InsertCode: %v", err)
		}
		got, err := s.ConsumeCode(ctx(t), c.Key)
		if err != nil {
			t.Fatalf("ConsumeCode: %v", err)
		}
		checkCode(t, got, c)
	}

	fam := "fam-" + Key()[:16]
	at := newToken(stores.AccessToken, fam, time.Hour)
	rt := newToken(stores.RefreshToken, fam, time.Hour)
	for _, tok := range []*stores.Token{at, rt} {
		tok.JKT = jkt
		tok.OIDC = oidcGrant("") // OIDC Core §12.2: no nonce on tokens
	}
	plain := newToken(stores.AccessToken, fam, time.Hour)
	plainRT := newToken(stores.RefreshToken, fam, time.Hour)
	if err := s.InsertTokens(ctx(t), at, rt, plain, plainRT); err != nil {
		t.Fatalf("InsertTokens: %v", err)
	}
	for _, tok := range []*stores.Token{at, rt, plain, plainRT} {
		got, err := s.LookupToken(ctx(t), tok.Kind, tok.Key)
		if err != nil {
			t.Fatalf("LookupToken(%s): %v", tok.Kind, err)
		}
		checkToken(t, got, tok)
		// The caller may change what it got without changing the store.
		if got.OIDC != nil {
			got.OIDC.Claims["email"] = "mallory@example.com"
		}
	}
	wantLive(t, "token after its copy was changed", s, at)
	for _, tok := range []*stores.Token{rt, plainRT} {
		got, err := s.ConsumeRefreshToken(ctx(t), tok.Key)
		if err != nil {
			t.Fatalf("ConsumeRefreshToken: %v", err)
		}
		checkToken(t, got, tok)
		got, err = s.ConsumeRefreshToken(ctx(t), tok.Key)
		wantErr(t, "second ConsumeRefreshToken", err, stores.ErrConsumed)
		checkToken(t, got, tok)
	}
}
