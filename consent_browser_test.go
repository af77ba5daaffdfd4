package oauth2

// The consent page in a real headless Chromium, in front of a real Caddy:
// what a person sees, reaches with the keyboard and clicks.

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"golang.org/x/oauth2"
)

// chromiumEnv names the Chromium binary; scripts/chromium.sh installs it
// and prints it.
const chromiumEnv = "OAUTH2_TEST_CHROMIUM"

// screenshotEnv, when set, names a directory where the test also saves its
// screenshots (docs/consent.png in the repository comes from there).
const screenshotEnv = "OAUTH2_TEST_SCREENSHOTS"

// browser starts a headless Chromium that sends alice's basic-auth
// credentials with every request.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := os.Getenv(chromiumEnv)
	if exe == "" {
		t.Skipf("%s is not set: run scripts/chromium.sh and eval \"$(scripts/chromium.sh env)\" to test the consent page in Chromium", chromiumEnv)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // as root in CI
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(900, 760),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:alice-password"))
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}}); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// callback is the client's redirect endpoint: it records each query.
type callback struct {
	*httptest.Server
	got chan url.Values
}

func newCallback(t *testing.T) *callback {
	c := &callback{got: make(chan url.Values, 4)}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.got <- r.URL.Query()
		fmt.Fprint(w, "<!DOCTYPE html><title>back at the app</title><p>done</p>")
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *callback) wait(t *testing.T) url.Values {
	t.Helper()
	select {
	case q := <-c.got:
		return q
	case <-time.After(30 * time.Second):
		t.Fatal("the browser never reached the client's redirect URI")
		return nil
	}
}

func browserConsentConfig(redirect, extra string) string {
	return `{
	admin off
	default_bind 127.0.0.1
	http_port 19480
	https_port 19443
	grace_period 1s
	persist_config off
	oauth2 {
		issuer http://127.0.0.1:19480
		scope_description orders:read "See your orders and their delivery status"
		scope_description orders:write "Place and cancel orders for you"
		` + extra + `
		client dashboard {
			name "Orders Dashboard"
			redirect_uri ` + redirect + `
			scopes orders:read orders:write profile
		}
	}
}
http://127.0.0.1:19480 {
	handle /oauth2/authorize {
		basic_auth {
			alice ` + aliceHash + `
		}
		oauth2_server
	}
	oauth2_server
}
`
}

func authorizeURL(redirect, challenge, state string) string {
	return "http://127.0.0.1:19480/oauth2/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {"dashboard"}, "redirect_uri": {redirect},
		"scope": {"orders:read orders:write profile"}, "state": {state},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}.Encode()
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv(screenshotEnv); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshot %s: %d bytes in %s", name, len(png), strings.Join(dirs, ", "))
}

func TestConsentPageInChromium(t *testing.T) {
	ctx := browser(t)
	cb := newCallback(t)
	redirect := cb.URL + "/cb"
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(browserConsentConfig(redirect, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCaddyProcess(t, path, 19480)
	verifier := oauth2.GenerateVerifier()
	conf := &oauth2.Config{
		ClientID: "dashboard", RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{TokenURL: "http://127.0.0.1:19480/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
	}

	// Render: the display name, the descriptions with the raw scopes in
	// small print, the user and where the answer goes.
	err := chromedp.Do(ctx,
		chromedp.Navigate(authorizeURL(redirect, oauth2.S256ChallengeFromVerifier(verifier), "s1")),
		chromedp.WaitVisible(chromedp.CSS("button.allow")),
	)
	if err != nil {
		t.Fatalf("rendering the consent page: %v\n%s", err, p.log)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	lang, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("html"), "lang"))
	if err != nil {
		t.Fatal(err)
	}
	small, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`parseFloat(getComputedStyle(document.querySelector('.raw')).fontSize) <
		parseFloat(getComputedStyle(document.querySelector('.scopes li')).fontSize)`))
	if err != nil {
		t.Fatal(err)
	}
	buttons, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('button')].map(b => b.textContent.trim())`))
	if err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "consent.png")
	for _, want := range []string{"Orders Dashboard wants to access your account", "Signed in as alice",
		"See your orders and their delivery status", "orders:read", "Place and cancel orders for you", "orders:write",
		"profile", "127.0.0.1"} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not show %q:\n%s", want, text)
		}
	}
	if lang.Value != "en" {
		t.Errorf("html lang = %q", lang.Value)
	}
	if !small {
		t.Error("raw scope names are not in small print")
	}
	if strings.Join(buttons, ",") != "Allow,Deny" {
		t.Errorf("buttons %q", buttons)
	}

	// Keyboard: Tab reaches Allow, then Deny; Enter on Allow approves.
	active := chromedp.Evaluate[string](`document.activeElement.textContent.trim()`)
	if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Tab)); err != nil {
		t.Fatal(err)
	}
	first, err := chromedp.Run(ctx, active)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Tab)); err != nil {
		t.Fatal(err)
	}
	second, err := chromedp.Run(ctx, active)
	if err != nil {
		t.Fatal(err)
	}
	if first != "Allow" || second != "Deny" {
		t.Fatalf("focus order: %q then %q, want Allow then Deny", first, second)
	}
	if err := chromedp.Do(ctx, chromedp.Focus(chromedp.CSS("button.allow")), chromedp.KeyEvent(kb.Enter)); err != nil {
		t.Fatal(err)
	}
	q := cb.wait(t)
	if q.Get("state") != "s1" || q.Get("code") == "" {
		t.Fatalf("approval reached the client with %v", q)
	}
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchanging the code approved in the browser: %v", err)
	}
	if got := tok.Extra("scope"); got != "orders:read orders:write profile" {
		t.Errorf("granted scope %v", got)
	}

	// Deny, with the mouse.
	err = chromedp.Do(ctx,
		chromedp.Navigate(authorizeURL(redirect, oauth2.S256ChallengeFromVerifier(verifier), "s2")),
		chromedp.WaitVisible(chromedp.CSS("button.deny")),
		chromedp.Click(chromedp.CSS("button.deny")),
	)
	if err != nil {
		t.Fatal(err)
	}
	if q := cb.wait(t); q.Get("error") != "access_denied" || q.Get("state") != "s2" || q.Has("code") {
		t.Fatalf("denial reached the client with %v", q)
	}
}

func TestCustomConsentTemplateInChromium(t *testing.T) {
	ctx := browser(t)
	cb := newCallback(t)
	redirect := cb.URL + "/cb"
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "consent.html")
	if err := os.WriteFile(tmpl, []byte(`<!DOCTYPE html><html lang="de"><title>Zugriff</title>
<h1 id="custom">{{.ClientName}} möchte: {{range .Scopes}}[{{.Description}}|{{.Name}}]{{end}} für {{.Subject}} → {{.RedirectHost}}</h1>
<form method="post">{{range .Fields}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">{{end}}
<button id="ja" name="{{.Decision}}" value="{{.Approve}}">Erlauben</button>
<button id="nein" name="{{.Decision}}" value="{{.Deny}}">Ablehnen</button></form>`), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(browserConsentConfig(redirect, "consent_template "+tmpl)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCaddyProcess(t, path, 19480)
	err := chromedp.Do(ctx,
		chromedp.Navigate(authorizeURL(redirect, oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()), "s3")),
		chromedp.WaitVisible(chromedp.CSS("#custom")),
	)
	var heading string
	if err == nil {
		heading, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#custom")))
	}
	if err != nil {
		t.Fatalf("rendering the custom consent page: %v\n%s", err, p.log)
	}
	screenshot(t, ctx, "consent-custom.png")
	want := "Orders Dashboard möchte: [See your orders and their delivery status|orders:read][Place and cancel orders for you|orders:write][|profile] für alice → 127.0.0.1"
	if !strings.HasPrefix(heading, want) {
		t.Fatalf("custom page heading %q, want prefix %q", heading, want)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#ja"))); err != nil {
		t.Fatal(err)
	}
	if q := cb.wait(t); q.Get("code") == "" || q.Get("state") != "s3" {
		t.Fatalf("approval through the custom page reached the client with %v", q)
	}
}
