package issuer

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

func TestMetadata(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+MetadataPath, nil)
	req.Header.Set("X-Forwarded-Proto", "https") // not trusted
	req.Header.Set("X-Forwarded-Host", "evil.example")
	res := e.do(req)
	if res.status != 200 || res.header.Get("Content-Type") != "application/json;charset=UTF-8" {
		t.Fatalf("status %d, Content-Type %q", res.status, res.header.Get("Content-Type"))
	}
	m := res.json(t)
	base := e.ts.URL
	want := map[string]any{
		"issuer":                                         base,
		"authorization_endpoint":                         base + "/oauth2/authorize",
		"token_endpoint":                                 base + "/oauth2/token",
		"revocation_endpoint":                            base + "/oauth2/revoke",
		"introspection_endpoint":                         base + "/oauth2/introspect",
		"response_types_supported":                       []any{"code"},
		"grant_types_supported":                          []any{"authorization_code", "client_credentials", "refresh_token"},
		"token_endpoint_auth_methods_supported":          []any{"client_secret_basic", "client_secret_post", "none"},
		"revocation_endpoint_auth_methods_supported":     []any{"client_secret_basic", "client_secret_post", "none"},
		"introspection_endpoint_auth_methods_supported":  []any{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":               []any{"S256"},
		"scopes_supported":                               []any{"admin", "read", "svc.read", "svc.write", "write"},
		"authorization_response_iss_parameter_supported": true,
	}
	for k, v := range want {
		if !reflect.DeepEqual(m[k], v) {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(method, e.ts.URL+MetadataPath, nil)
		if res := e.do(req); res.status != http.StatusMethodNotAllowed || res.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d, Allow %q", method, res.status, res.header.Get("Allow"))
		}
	}
}

func TestMetadataOrigin(t *testing.T) {
	e := newEnv(t)
	// TLS gives https; the Host header gives the host.
	tls := httptest.NewTLSServer(e.srv.Endpoint(MetadataPath))
	defer tls.Close()
	resp, err := tls.Client().Get(tls.URL + MetadataPath)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if m["issuer"] != tls.URL || m["token_endpoint"] != tls.URL+TokenPath {
		t.Errorf("TLS metadata %v", m)
	}

	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "http://auth.example:8443"+MetadataPath, nil)
	e.srv.Endpoint(MetadataPath).ServeHTTP(rec, r)
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	if m["issuer"] != "http://auth.example:8443" {
		t.Errorf("issuer %v", m["issuer"])
	}

	c := newEnv(t, func(c *Config) { c.Issuer = "https://login.example/" })
	rec = httptest.NewRecorder()
	c.srv.Endpoint(MetadataPath).ServeHTTP(rec, r)
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	if m["issuer"] != "https://login.example/" || m["authorization_endpoint"] != "https://login.example/oauth2/authorize" {
		t.Errorf("configured issuer metadata %v", m)
	}
}

func TestEndpoint(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{AuthorizePath, TokenPath, RevokePath, IntrospectPath, MetadataPath} {
		if e.srv.Endpoint(p) == nil {
			t.Errorf("no handler for %s", p)
		}
	}
	for _, p := range []string{"", "/", "/oauth2", "/oauth2/token/", "/oauth2/userinfo"} {
		if e.srv.Endpoint(p) != nil {
			t.Errorf("handler for %q", p)
		}
	}
}
