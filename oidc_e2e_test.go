package oauth2

// End-to-end test of OpenID Connect through a real Caddy with a second,
// independent relying-party implementation: golang.org/x/oauth2 with
// github.com/coreos/go-oidc/v3 discovers the provider, runs the code flow
// with PKCE and a nonce, verifies the ID token itself, calls UserInfo,
// refreshes for a new ID token and rejects a tampered one; the guard
// passes the grant's claims upstream and refuses an ID token.

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const (
	oidcAuthBase  = "http://localhost:20680"
	oidcAPIBase   = "http://localhost:20681"
	oidcAdminPort = 20699
)

func oidcE2EConfig(format, store, upstreamAddr string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	default_bind 127.0.0.1
	http_port 20680
	https_port 20682
	grace_period 1ns
	skip_install_trust
	oauth2 {
		issuer %s
		token_secret oidc-e2e-token-secret-of-32-bytes-or-more
		access_token_format %s
		access_token_store %s
		authorization_code_store %s
		oidc {
			claim email  {http.auth.user.id}@example.com
			claim groups {http.vars.groups} scope groups
			claim name   {http.request.header.X-Unset}
			auth_time_placeholder {time.now.unix}
		}
		client rp {
			secret_hash %s
			redirect_uri http://127.0.0.1:9999/cb
			scopes openid email profile groups
			skip_consent
		}
	}
}
%s {
	handle /oauth2/authorize {
		basic_auth {
			alice %s
		}
		vars groups "admins, devs"
		oauth2_server
	}
	oauth2_server
}
%s {
	oauth2_guard email
	reverse_proxy %s {
		header_up X-User {http.auth.user.id}
		header_up X-Email {oauth2.claims.email}
		header_up X-Groups {oauth2.claims.groups}
	}
}
`, oidcAdminPort, oidcAuthBase, format, store, store, secretHash, oidcAuthBase, aliceHash, oidcAPIBase, upstreamAddr)
}

func TestOIDCRelyingPartyCache(t *testing.T) {
	for _, format := range []string{"opaque", "jwt"} {
		t.Run(format, func(t *testing.T) { runOIDCRelyingParty(t, format, "cache") })
	}
}

func TestOIDCRelyingPartyPostgres(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("OAUTH2_TEST_POSTGRES_DSN is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\"")
	}
	store := fmt.Sprintf("sql {\n\t\t\tdialect postgres\n\t\t\tdsn %q\n\t\t\ttable_prefix oidc_\n\t\t\tcreate_schema\n\t\t}", dsn)
	for _, format := range []string{"opaque", "jwt"} {
		t.Run(format, func(t *testing.T) { runOIDCRelyingParty(t, format, store) })
	}
}

func runOIDCRelyingParty(t *testing.T, format, store string) {
	up := newUpstream(t)
	startCaddyAdmin(t, oidcE2EConfig(format, store, strings.TrimPrefix(up.URL, "http://")), oidcAdminPort)
	ctx := context.Background()

	// Discovery (OpenID Connect Discovery §4); go-oidc checks the issuer.
	provider, err := oidc.NewProvider(ctx, oidcAuthBase)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	var disc struct {
		UserInfo string   `json:"userinfo_endpoint"`
		Algs     []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&disc); err != nil || disc.UserInfo != oidcAuthBase+"/oauth2/userinfo" || len(disc.Algs) == 0 || disc.Algs[0] != "RS256" {
		t.Errorf("discovery document: %+v %v", disc, err)
	}
	cfg := &oauth2.Config{
		ClientID: "rp", ClientSecret: "s3cret", Endpoint: provider.Endpoint(),
		RedirectURL: "http://127.0.0.1:9999/cb", Scopes: []string{oidc.ScopeOpenID, "email", "groups"},
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: "rp"})

	// The code flow with PKCE and a nonce.
	pkceVerifier, nonce := oauth2.GenerateVerifier(), "n-"+oauth2.GenerateVerifier()[:16]
	before := time.Now().Add(-time.Second).Truncate(time.Second)
	code := authorize(t, cfg, oidc.Nonce(nonce), oauth2.S256ChallengeOption(pkceVerifier))
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(pkceVerifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		t.Fatal("no id_token in the token response")
	}
	idt, err := verifier.Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("go-oidc refused the ID token: %v", err)
	}
	if idt.Subject != "alice" || idt.Nonce != nonce || idt.AccessTokenHash == "" {
		t.Errorf("ID token sub %q nonce %q at_hash %q", idt.Subject, idt.Nonce, idt.AccessTokenHash)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	var claims struct {
		Email     string   `json:"email"`
		Groups    []string `json:"groups"`
		Name      *string  `json:"name"`
		AuthTime  int64    `json:"auth_time"`
		SessionID string   `json:"sid"`
		AZP       string   `json:"azp"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Email != "alice@example.com" || strings.Join(claims.Groups, "|") != "admins|devs" || claims.Name != nil ||
		claims.AuthTime < before.Unix() || claims.SessionID == "" || claims.AZP != "rp" {
		t.Errorf("ID token claims %+v", claims)
	}

	// UserInfo with the access token (OIDC Core §5.3).
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uiClaims map[string]any
	_ = ui.Claims(&uiClaims)
	if ui.Subject != "alice" || ui.Email != "alice@example.com" || fmt.Sprint(uiClaims["groups"]) != "[admins devs]" {
		t.Errorf("userinfo %+v %v", ui, uiClaims)
	}

	// The guard passes the grant's claims upstream, for opaque tokens too.
	resp, body := get(t, http.DefaultClient, oidcAPIBase+"/", tok.AccessToken)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("guard: %d %s", resp.StatusCode, body)
	}
	h := up.last(t)
	if h.Get("X-User") != "alice" || h.Get("X-Email") != "alice@example.com" || h.Get("X-Groups") != "admins,devs" {
		t.Errorf("upstream saw user %q email %q groups %q", h.Get("X-User"), h.Get("X-Email"), h.Get("X-Groups"))
	}
	// An ID token is not an access token: the guard and UserInfo refuse it.
	if resp, body := get(t, http.DefaultClient, oidcAPIBase+"/", rawID); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("guard took an ID token as an access token: %d %s", resp.StatusCode, body)
	}
	if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: rawID, TokenType: "Bearer"})); err == nil {
		t.Error("UserInfo took an ID token as an access token")
	}

	// A refresh brings a new ID token with the same sub and auth_time and
	// no nonce (OIDC Core §12.2).
	tok.Expiry = time.Now().Add(-time.Minute)
	fresh, err := cfg.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	rawID2, _ := fresh.Extra("id_token").(string)
	if rawID2 == "" || rawID2 == rawID {
		t.Fatal("the refresh brought no new id_token")
	}
	idt2, err := verifier.Verify(ctx, rawID2)
	if err != nil {
		t.Fatalf("go-oidc refused the refreshed ID token: %v", err)
	}
	var claims2 struct {
		AuthTime int64 `json:"auth_time"`
	}
	_ = idt2.Claims(&claims2)
	if idt2.Subject != idt.Subject || claims2.AuthTime != claims.AuthTime || idt2.Nonce != "" {
		t.Errorf("refreshed ID token sub %q auth_time %d nonce %q", idt2.Subject, claims2.AuthTime, idt2.Nonce)
	}
	if err := idt2.VerifyAccessToken(fresh.AccessToken); err != nil {
		t.Errorf("refreshed at_hash: %v", err)
	}

	// go-oidc itself rejects a tampered ID token: a changed payload, a
	// changed signature, another audience.
	parts := strings.Split(rawID, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"sub":"alice"`, `"sub":"mallory"`, 1)))
	sig := []byte(parts[2])
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	for name, bad := range map[string]string{
		"payload":   parts[0] + "." + forged + "." + parts[2],
		"signature": parts[0] + "." + parts[1] + "." + string(sig),
		"no sig":    parts[0] + "." + parts[1] + ".",
	} {
		if bad == rawID {
			t.Fatalf("%s: the tampering changed nothing", name)
		}
		if _, err := verifier.Verify(ctx, bad); err == nil {
			t.Errorf("go-oidc accepted an ID token with a tampered %s", name)
		}
	}
	if _, err := provider.Verifier(&oidc.Config{ClientID: "another"}).Verify(ctx, rawID); err == nil {
		t.Error("go-oidc accepted the ID token for another client")
	}
}

// startCaddyAdmin starts Caddy with its admin endpoint on port.
func startCaddyAdmin(t *testing.T, config string, port int) {
	t.Helper()
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: port})
	tester.InitServer(config, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}
