package issuer

import (
	"html/template"
	"net/http"
	"strings"
	"testing"
)

func TestConsentPageShowsNameLogoAndDescriptions(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients["conf"].Name = "Orders <Dashboard>"
		c.Clients["conf"].LogoURI = "https://cdn.example.com/logo.png"
		c.ScopeDescriptions = map[string]string{"read": "Read your things"}
	})
	_, challenge := pkce()
	res := e.authorize(authParams("conf", "scope", "read write", "code_challenge", challenge, "code_challenge_method", "S256",
		"redirect_uri", confRedirect), testUser)
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	for _, want := range []string{`<html lang="en">`, "<strong>Orders &lt;Dashboard&gt;</strong> wants to access your account",
		`<img src="https://cdn.example.com/logo.png"`, "Read your things", `<span class="raw">read</span>`,
		`<span class="raw">write</span>`, testUser} {
		if !strings.Contains(res.body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if csp := res.header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src https:") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
}

func TestLogoURIMustBeHTTPS(t *testing.T) {
	for _, logo := range []string{"http://example.com/logo.png", "javascript:alert(1)", "data:image/png;base64,AA==", "//example.com/x.png"} {
		clients := testClients(t)
		clients["conf"].LogoURI = logo
		if _, err := New(Config{Clients: clients, Codes: newFakeStore(nil), Tokens: newFakeStore(nil), Hasher: newEnv(t).hasher}); err == nil ||
			!strings.Contains(err.Error(), "must be an https URL") {
			t.Errorf("logo %q: %v", logo, err)
		}
	}
}

func TestConsentTemplateMustDefineThePage(t *testing.T) {
	tmpl := template.Must(template.New("other").Parse("x"))
	e := newEnv(t)
	_, err := New(Config{Clients: testClients(t), Codes: e.store, Tokens: e.store, Hasher: e.hasher, ConsentTemplate: tmpl})
	if err == nil || !strings.Contains(err.Error(), `defines no "consent.html"`) {
		t.Fatalf("New with a template lacking consent.html: %v", err)
	}
}
