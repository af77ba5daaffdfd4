package validator

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/token"
)

// claimsSource stands for an external issuer: every token "ext.<aud>" is
// recognised and carries that aud (an empty one: none).
type claimsSource struct{}

func (claimsSource) Recognize(raw string) bool { return strings.HasPrefix(raw, "ext.") }
func (claimsSource) Verify(_ context.Context, raw string) (Grant, error) {
	claims := map[string]any{}
	switch aud := strings.TrimPrefix(raw, "ext."); {
	case strings.Contains(aud, ","):
		list := []any{}
		for _, a := range strings.Split(aud, ",") {
			list = append(list, a)
		}
		claims["aud"] = list
	case aud != "":
		claims["aud"] = aud
	}
	return Grant{Token: &stores.Token{ClientID: "x", Scope: "mcp:tools", ExpiresAt: time.Now().Add(time.Hour)}, Claims: claims,
		Issuer: &ForeignIssuer{ID: "https://other.example"}}, nil
}

// A guard with a resource refuses any source's token whose aud lacks it,
// and names its metadata and scopes in its challenges.
func TestResource(t *testing.T) {
	const res = "https://mcp.example/mcp"
	meta, err := NewProtectedResource(ProtectedResource{Resource: res, Name: "Tools", Scopes: []string{"mcp:tools"},
		AuthorizationServers: func(*http.Request) []string { return []string{"https://as.example", "https://other.example"} }})
	if err != nil {
		t.Fatal(err)
	}
	if meta.Path() != "/.well-known/oauth-protected-resource/mcp" || meta.URL() != "https://mcp.example/.well-known/oauth-protected-resource/mcp" {
		t.Fatalf("path %q url %q", meta.Path(), meta.URL())
	}
	v, err := New(Config{Tokens: &fakeTokens{tokens: map[string]*stores.Token{}}, Hasher: token.NewHasher([]byte("k")),
		Scopes: []string{"mcp:tools"}, Resource: res, ResourceMetadata: meta.URL(), Sources: []Source{claimsSource{}}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(raw string) *Denial {
		r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
		if raw != "" {
			r.Header.Set("Authorization", "Bearer "+raw)
		}
		_, d := v.CheckGrant(r)
		return d
	}
	for raw, pass := range map[string]bool{
		"ext." + res:                               true,
		"ext.https://a.example," + res:             true,
		"ext.https://other.example/mcp":            false,
		"ext.":                                     false, // an introspection answer without aud
		"ext.https://mcp.example":                  false,
		"ext.https://a.example,https://b.example/": false,
	} {
		d := check(raw)
		if pass != (d == nil) {
			t.Errorf("%s: denial %+v, want pass=%v", raw, d, pass)
		}
		if d != nil && (d.Status != 401 || !strings.Contains(d.Challenge, `error="invalid_token"`) ||
			!strings.Contains(d.Challenge, `resource_metadata="`+meta.URL()+`"`) || !strings.Contains(d.Challenge, `scope="mcp:tools"`)) {
			t.Errorf("%s: %d %q", raw, d.Status, d.Challenge)
		}
	}
	if d := check(""); d.Status != 401 || d.Challenge != `Bearer realm="api", resource_metadata="`+meta.URL()+`", scope="mcp:tools"` {
		t.Errorf("no token: %q", d.Challenge)
	}

	rec := httptest.NewRecorder()
	meta.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, meta.Path(), nil))
	var doc map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &doc)
	if rec.Code != 200 || doc["resource"] != res || doc["resource_name"] != "Tools" ||
		len(doc["authorization_servers"].([]any)) != 2 || rec.Header().Get("Access-Control-Allow-Origin") != "*" ||
		rec.Header().Get("Cache-Control") != "public, max-age=300" {
		t.Errorf("document: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	rec = httptest.NewRecorder()
	meta.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, meta.Path(), nil))
	if rec.Code != 405 {
		t.Errorf("POST: %d", rec.Code)
	}
	for _, bad := range []string{"", "mcp", "https://mcp.example/mcp#x", "https://u@mcp.example/", "ftp://mcp.example/"} {
		if _, err := NewProtectedResource(ProtectedResource{Resource: bad, AuthorizationServers: func(*http.Request) []string { return nil }}); err == nil {
			t.Errorf("resource %q accepted", bad)
		}
	}
}

// Without a resource the challenges are what they were.
func TestChallengesWithoutResource(t *testing.T) {
	v, _, _ := setup(t, "read")
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if _, d := v.CheckGrant(r); d.Challenge != `Bearer realm="api"` {
		t.Errorf("no token: %q", d.Challenge)
	}
	r.Header.Set("Authorization", "Bearer ext.x")
	if _, d := v.CheckGrant(r); strings.Contains(d.Challenge, "resource_metadata") {
		t.Errorf("invalid: %q", d.Challenge)
	}
}
