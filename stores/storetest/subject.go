package storetest

import (
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
)

// testRevokeSubject checks stores.SubjectRevoker: everything of one user,
// of one client, or of one user with one client goes, nothing else does,
// and the count is right.
func testRevokeSubject(t *testing.T, s stores.Store) {
	sr, ok := s.(stores.SubjectRevoker)
	if !ok {
		t.Skip("the store does not implement stores.SubjectRevoker")
	}
	sfx := Key()[:8]
	alice, bob := "alice-"+sfx, "bob-"+sfx
	web, cli := "web-"+sfx, "cli-"+sfx
	type grant struct {
		code   *stores.Code
		tokens []*stores.Token
	}
	mk := func(subject, client string) grant {
		c := newCode(time.Hour)
		c.Subject, c.ClientID = subject, client
		fam := "fam-" + Key()[:16]
		at, rt := newToken(stores.AccessToken, fam, time.Hour), newToken(stores.RefreshToken, fam, time.Hour)
		for _, tok := range []*stores.Token{at, rt} {
			tok.Subject, tok.ClientID = subject, client
		}
		if err := s.InsertCode(ctx(t), c); err != nil {
			t.Fatalf("InsertCode: %v", err)
		}
		if err := s.InsertTokens(ctx(t), at, rt); err != nil {
			t.Fatalf("InsertTokens: %v", err)
		}
		return grant{c, []*stores.Token{at, rt}}
	}
	aliceWeb, aliceCLI, bobWeb := mk(alice, web), mk(alice, cli), mk(bob, web)
	svc := newToken(stores.AccessToken, "", time.Hour) // client_credentials: no subject
	svc.Subject, svc.ClientID = "", cli
	if err := s.InsertTokens(ctx(t), svc); err != nil {
		t.Fatalf("InsertTokens: %v", err)
	}
	live := func(g grant) int {
		n := 0
		for _, tok := range g.tokens {
			if _, err := s.LookupToken(ctx(t), tok.Kind, tok.Key); err == nil {
				n++
			}
		}
		return n
	}
	until := time.Now().Add(time.Hour)

	// Alice with the CLI client only.
	n, err := sr.RevokeSubject(ctx(t), alice, cli, until)
	if err != nil || n != 3 {
		t.Fatalf("RevokeSubject(alice, cli) = %d, %v; want 3 (a code and two tokens)", n, err)
	}
	if live(aliceCLI) != 0 || live(aliceWeb) != 2 || live(bobWeb) != 2 {
		t.Fatalf("after revoking alice on cli: alice/cli %d, alice/web %d, bob/web %d live tokens", live(aliceCLI), live(aliceWeb), live(bobWeb))
	}
	if _, err := s.ConsumeCode(ctx(t), aliceCLI.code.Key); err == nil {
		t.Fatal("alice's cli code still redeems")
	}
	// Her grant's family is marked: a refresh in flight cannot bring it back.
	late := newToken(stores.AccessToken, aliceCLI.tokens[0].Family, time.Hour)
	if err := s.InsertTokens(ctx(t), late); err == nil {
		if _, err := s.LookupToken(ctx(t), late.Kind, late.Key); err == nil {
			t.Fatal("a token inserted into a revoked user's grant afterwards is live")
		}
	}

	// Alice everywhere.
	if n, err := sr.RevokeSubject(ctx(t), alice, "", until); err != nil || n != 3 {
		t.Fatalf("RevokeSubject(alice) = %d, %v; want 3", n, err)
	}
	if live(aliceWeb) != 0 || live(bobWeb) != 2 {
		t.Fatalf("after revoking alice: alice/web %d, bob/web %d live tokens", live(aliceWeb), live(bobWeb))
	}
	if _, err := s.ConsumeCode(ctx(t), bobWeb.code.Key); err != nil {
		t.Fatalf("bob's code was touched: %v", err)
	}

	// Everything of the CLI client, which has only the service token left.
	if n, err := sr.RevokeSubject(ctx(t), "", cli, until); err != nil || n != 1 {
		t.Fatalf("RevokeSubject(client cli) = %d, %v; want 1", n, err)
	}
	if _, err := s.LookupToken(ctx(t), svc.Kind, svc.Key); err == nil {
		t.Fatal("the client's service token survived")
	}
	if live(bobWeb) != 2 {
		t.Fatal("bob's web tokens were touched by revoking the cli client")
	}
	// A client_credentials token has no subject: the client is its own
	// (the guard shows the client_id as the user), so revoking that
	// subject revokes it, and revoking another user's does not.
	svcID := "svc-" + sfx
	mkSvc := func() *stores.Token {
		tok := newToken(stores.AccessToken, "", time.Hour)
		tok.Subject, tok.ClientID = "", svcID
		if err := s.InsertTokens(ctx(t), tok); err != nil {
			t.Fatalf("InsertTokens: %v", err)
		}
		return tok
	}
	svcA, svcB, svcC := mkSvc(), mkSvc(), mkSvc()
	if n, err := sr.RevokeSubject(ctx(t), bob, "", until); err != nil || n != 3 {
		t.Fatalf("RevokeSubject(bob) = %d, %v; want 3 (his redeemed code and two tokens)", n, err)
	}
	if n, err := sr.RevokeSubject(ctx(t), svcID, web, until); err != nil || n != 0 {
		t.Fatalf("RevokeSubject(%s on another client) = %d, %v; want 0", svcID, n, err)
	}
	wantLive(t, "client_credentials tokens after revoking other subjects", s, svcA, svcB, svcC)
	if n, err := sr.RevokeSubject(ctx(t), svcID, "", until); err != nil || n != 3 {
		t.Fatalf("RevokeSubject(%s), the subject of its client_credentials tokens = %d, %v; want 3", svcID, n, err)
	}
	wantDead(t, "client_credentials tokens after revoking their client as subject", s, svcA, svcB, svcC)
	svcD := mkSvc()
	if n, err := sr.RevokeSubject(ctx(t), svcID, svcID, until); err != nil || n != 1 {
		t.Fatalf("RevokeSubject(%s, %s) = %d, %v; want 1", svcID, svcID, n, err)
	}
	wantDead(t, "a client_credentials token after revoking its client as subject and client", s, svcD)

	if n, err := sr.RevokeSubject(ctx(t), "nobody-"+sfx, "", until); err != nil || n != 0 {
		t.Fatalf("revoking an unknown user = %d, %v", n, err)
	}
	if _, err := sr.RevokeSubject(ctx(t), "", "", until); err == nil {
		t.Fatal("RevokeSubject with neither subject nor client succeeded")
	}
}
