package issuer

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestOAuth2ClientFlow drives the authorization code flow with PKCE and
// refresh rotation through golang.org/x/oauth2, a client that knows nothing
// of this server.
func TestOAuth2ClientFlow(t *testing.T) {
	cases := []struct {
		name, id, secret, redirect string
		style                      oauth2.AuthStyle
	}{
		{"public auto-detect", "pub", "", pubRedirect, oauth2.AuthStyleAutoDetect},
		{"public in params", "pub", "", pubRedirect, oauth2.AuthStyleInParams},
		{"confidential basic", "conf", confSecret, confRedirect, oauth2.AuthStyleInHeader},
		{"confidential post", "conf", confSecret, confRedirect, oauth2.AuthStyleInParams},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, e.ts.Client())
			conf := &oauth2.Config{
				ClientID:     tc.id,
				ClientSecret: tc.secret,
				RedirectURL:  tc.redirect,
				Scopes:       []string{"write", "read"},
				Endpoint: oauth2.Endpoint{
					AuthURL:   e.ts.URL + AuthorizePath,
					TokenURL:  e.ts.URL + TokenPath,
					AuthStyle: tc.style,
				},
			}
			verifier := oauth2.GenerateVerifier()
			req, _ := http.NewRequest(http.MethodGet, conf.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier)), nil)
			req.Header.Set("X-Test-User", testUser)
			page := e.do(req)
			if page.status != http.StatusOK {
				t.Fatalf("authorize: %d %.300s", page.status, page.body)
			}
			form := hiddenFields(page.body)
			form.Set("decision", "approve")
			_, q := e.consent(form, testUser).location(t)
			if q.Get("state") != "st4te" || q.Get("iss") != e.ts.URL {
				t.Fatalf("redirect %v", q)
			}

			tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if !strings.HasPrefix(tok.AccessToken, "cat_") || !strings.HasPrefix(tok.RefreshToken, "crt_") ||
				tok.TokenType != "Bearer" || tok.Extra("scope") != "read write" {
				t.Fatalf("token %+v scope %v", tok, tok.Extra("scope"))
			}
			if d := time.Until(tok.Expiry); d < 59*time.Minute || d > 61*time.Minute {
				t.Errorf("expiry in %v", d)
			}

			// Refresh rotation.
			stale := &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
			tok2, err := conf.TokenSource(ctx, stale).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
				t.Fatalf("refresh did not rotate: %+v", tok2)
			}
			if !e.active(tok2.AccessToken) || e.active(tok.RefreshToken) {
				t.Error("rotation left the wrong tokens active")
			}

			// Replaying the old refresh token revokes the grant.
			_, err = conf.TokenSource(ctx, stale).Token()
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
				t.Fatalf("replay: %v", err)
			}
			if e.active(tok2.AccessToken) || e.active(tok2.RefreshToken) || e.active(tok.AccessToken) {
				t.Error("replay did not revoke the grant")
			}

			// The code cannot be redeemed twice either.
			if _, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
				t.Errorf("code replay: %v", err)
			}
		})
	}
}

func TestOAuth2ClientCredentials(t *testing.T) {
	e := newEnv(t)
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, e.ts.Client())
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams, oauth2.AuthStyleAutoDetect} {
		cc := &clientcredentials.Config{
			ClientID: "svc", ClientSecret: svcSecret, TokenURL: e.ts.URL + TokenPath,
			Scopes: []string{"svc.read"}, AuthStyle: style,
		}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("style %v: %v", style, err)
		}
		if tok.RefreshToken != "" || tok.Extra("scope") != "svc.read" || !e.active(tok.AccessToken) {
			t.Errorf("style %v: token %+v", style, tok)
		}
	}
	bad := &clientcredentials.Config{ClientID: "svc", ClientSecret: "nope", TokenURL: e.ts.URL + TokenPath, AuthStyle: oauth2.AuthStyleInHeader}
	var re *oauth2.RetrieveError
	if _, err := bad.Token(ctx); !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 {
		t.Errorf("bad secret: %v", err)
	}
	wide := &clientcredentials.Config{ClientID: "svc", ClientSecret: svcSecret, TokenURL: e.ts.URL + TokenPath, Scopes: []string{"admin"}}
	if _, err := wide.Token(ctx); !errors.As(err, &re) || re.ErrorCode != "invalid_scope" {
		t.Errorf("unknown scope: %v", err)
	}
}
