package issuer

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	mcpResource   = "https://mcp.example/mcp"
	otherResource = "https://other.example/mcp"
)

// withResources lets every client name mcpResource and otherResource.
func withResources(cfg *Config) {
	cfg.Resources = NewResources()
	_ = cfg.Resources.Add(mcpResource, "Example tools")
	_ = cfg.Resources.Add(otherResource, "")
}

// RFC 8707 §2.1: the authorization request's resource is checked, shown on
// the consent page, bound into the code and narrowed only.
func TestAuthorizeResource(t *testing.T) {
	e := newEnv(t, withResources)
	_, challenge := pkce()
	params := authParams("pub", "code_challenge", challenge, "code_challenge_method", "S256", "state", "s1",
		"resource", "https://unknown.example/api")
	wantRedirectError(t, e.authorize(params, testUser), pubRedirect, "invalid_target", "s1")
	params.Set("resource", "not a uri")
	wantRedirectError(t, e.authorize(params, testUser), pubRedirect, "invalid_target", "s1")

	params.Set("resource", mcpResource)
	res := e.authorize(params, testUser)
	if res.status != http.StatusOK || !strings.Contains(res.body, "Example tools") || !strings.Contains(res.body, mcpResource) {
		t.Fatalf("consent page does not show the resource: %d %.2000s", res.status, res.body)
	}
	// A form whose resource was changed after it was shown is refused.
	form := hiddenFields(res.body)
	form.Set("resource", otherResource)
	form.Set("decision", "approve")
	if res := e.consent(form, testUser); res.status != http.StatusForbidden {
		t.Errorf("tampered resource: status %d, want 403", res.status)
	}

	// The code is bound: the token request may repeat or omit the
	// resource, never name another.
	for _, tc := range []struct {
		resource []string
		status   int
		aud      string
	}{
		{nil, 200, mcpResource},
		{[]string{mcpResource}, 200, mcpResource},
		{[]string{otherResource}, 400, ""},
		{[]string{"https://unknown.example/api"}, 400, ""},
	} {
		verifier, challenge := pkce()
		p := authParams("pub", "code_challenge", challenge, "code_challenge_method", "S256", "resource", mcpResource)
		code := e.code(p)
		res := e.postAs(TokenPath, "pub", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"code_verifier": {verifier}, "resource": tc.resource})
		if res.status != tc.status {
			t.Fatalf("token with resource %v: %d %s", tc.resource, res.status, res.body)
		}
		if tc.status != 200 {
			if got := res.json(t)["error"]; got != "invalid_target" {
				t.Errorf("token with resource %v: error %v, want invalid_target", tc.resource, got)
			}
			continue
		}
		tok := res.json(t)
		in := e.introspect(tok["access_token"].(string))
		if aud, _ := json.Marshal(in["aud"]); !strings.Contains(string(aud), tc.aud) {
			t.Errorf("introspected aud = %s, want %s", aud, tc.aud)
		}
		// RFC 8707 §2.2: a refresh may not widen the audience.
		ref := e.postAs(TokenPath, "pub", url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {tok["refresh_token"].(string)}, "resource": {otherResource}})
		if ref.status != 400 || ref.json(t)["error"] != "invalid_target" {
			t.Errorf("widening refresh: %d %s", ref.status, ref.body)
		}
		ref = e.postAs(TokenPath, "pub", url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {tok["refresh_token"].(string)}, "resource": {mcpResource}})
		if ref.status != 200 {
			t.Errorf("refresh for the bound resource: %d %s", ref.status, ref.body)
		}
	}
}

// docServer serves client ID metadata documents over TLS on loopback.
type docServer struct {
	*httptest.Server
	docs map[string]func(w http.ResponseWriter, base string)
}

func newDocServer(t *testing.T) *docServer {
	d := &docServer{docs: map[string]func(http.ResponseWriter, string){}}
	d.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := d.docs[r.URL.Path]; f != nil {
			f(w, d.URL)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(d.Close)
	return d
}

// withDocuments turns metadata documents on, trusting the doc server.
func withDocuments(d *docServer, private bool) func(*Config) {
	pool := x509.NewCertPool()
	pool.AddCert(d.Certificate())
	return func(cfg *Config) {
		cfg.MetadataDocuments = &MetadataDocuments{
			Scopes: []string{"read"}, AllowPrivateAddresses: private,
			TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		}
	}
}

func docJSON(id string, extra string) string {
	return `{"client_id":"` + id + `","client_name":"Doc client","redirect_uris":["https://doc.example/cb"]` + extra + `}`
}

// A client ID metadata document's client gets tokens as a public client
// with PKCE, after consent that names its host; a bad document is the
// client's error on the authorization endpoint's page, counted.
func TestMetadataDocuments(t *testing.T) {
	d := newDocServer(t)
	d.docs["/good"] = func(w http.ResponseWriter, base string) {
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = w.Write([]byte(docJSON(base+"/good", `,"scope":"read write"`)))
	}
	d.docs["/mismatch"] = func(w http.ResponseWriter, base string) {
		_, _ = w.Write([]byte(docJSON(base+"/other", "")))
	}
	d.docs["/big"] = func(w http.ResponseWriter, base string) {
		_, _ = w.Write([]byte(docJSON(base+"/big", `,"pad":"`+strings.Repeat("x", DocumentMaxBytes)+`"`)))
	}
	d.docs["/redirect"] = func(w http.ResponseWriter, base string) {
		w.Header().Set("Location", base+"/good")
		w.WriteHeader(http.StatusFound)
	}
	d.docs["/secret"] = func(w http.ResponseWriter, base string) {
		_, _ = w.Write([]byte(docJSON(base+"/secret", `,"client_secret":"abc"`)))
	}
	d.docs["/badredirect"] = func(w http.ResponseWriter, base string) {
		_, _ = w.Write([]byte(`{"client_id":"` + base + `/badredirect","redirect_uris":["http://evil.example/cb"]}`))
	}
	var failures []string
	e := newEnv(t, withDocuments(d, true), func(cfg *Config) {
		cfg.MetadataDocuments.Failed = func(reason string) { failures = append(failures, reason) }
	})

	good := d.URL + "/good"
	_, challenge := pkce()
	// Without PKCE: refused, as for every public client.
	res := e.authorize(authParams(good, "redirect_uri", "https://doc.example/cb", "state", "s"), testUser)
	wantRedirectError(t, res, "https://doc.example/cb", "invalid_request", "s")
	res = e.authorize(authParams(good, "code_challenge", challenge, "code_challenge_method", "S256"), testUser)
	host := strings.TrimPrefix(d.URL, "https://")
	if res.status != 200 || !strings.Contains(res.body, `id="metadata-document"`) || !strings.Contains(res.body, host) {
		t.Fatalf("consent page of a document client: %d %.1500s", res.status, res.body)
	}
	tok := e.tokens(good)
	if tok["scope"] != "read" {
		t.Errorf("scope = %v, want read (the document's cut to the policy)", tok["scope"])
	}
	if !e.active(tok["access_token"].(string)) {
		t.Errorf("the document client's token is not active")
	}

	for _, tc := range []struct{ path, reason string }{
		{"/mismatch", "mismatch"},
		{"/big", "too_large"},
		{"/redirect", "redirect"},
		{"/secret", "invalid"},
		{"/badredirect", "invalid"},
		{"/missing", "status"},
		{"/a/../good", "invalid"},
	} {
		failures = nil
		res := e.authorize(authParams(d.URL+tc.path, "code_challenge", challenge, "code_challenge_method", "S256",
			"redirect_uri", "https://doc.example/cb"), testUser)
		if res.status != http.StatusBadRequest || !strings.Contains(res.body, "invalid_client") || res.header.Get("Location") != "" {
			t.Errorf("%s: %d %q %.300s", tc.path, res.status, res.header.Get("Location"), res.body)
		}
		if len(failures) != 1 || failures[0] != tc.reason {
			t.Errorf("%s: counted %v, want [%s]", tc.path, failures, tc.reason)
		}
	}
	// At the token endpoint too, invalid_client.
	res = e.post(TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {d.URL + "/mismatch"}})
	if res.status != 401 && res.status != 400 || res.json(t)["error"] != "invalid_client" {
		t.Errorf("token endpoint with a mismatched document: %d %s", res.status, res.body)
	}
	// The metadata says so.
	res = e.do(mustGet(t, e.ts.URL+MetadataPath))
	if !strings.Contains(res.body, `"client_id_metadata_document_supported":true`) {
		t.Errorf("metadata: %s", res.body)
	}
}

// Without allow_private_addresses, a document on a loopback address is
// never fetched.
func TestMetadataDocumentPrivateAddress(t *testing.T) {
	d := newDocServer(t)
	var wasFetched atomic.Bool
	d.docs["/doc"] = func(w http.ResponseWriter, base string) {
		wasFetched.Store(true)
		_, _ = w.Write([]byte(docJSON(base+"/doc", "")))
	}
	var failures []string
	e := newEnv(t, withDocuments(d, false), func(cfg *Config) {
		cfg.MetadataDocuments.Failed = func(reason string) { failures = append(failures, reason) }
	})
	_, challenge := pkce()
	res := e.authorize(authParams(d.URL+"/doc", "code_challenge", challenge, "code_challenge_method", "S256"), testUser)
	if fetched := wasFetched.Load(); res.status != http.StatusBadRequest || !strings.Contains(res.body, "invalid_client") || fetched {
		t.Errorf("private-address document: %d fetched=%v %.300s", res.status, fetched, res.body)
	}
	if len(failures) != 1 || failures[0] != "address" {
		t.Errorf("counted %v, want [address]", failures)
	}
}

func TestDocumentCacheLifetime(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		header http.Header
		want   time.Duration
	}{
		{http.Header{}, MinDocumentCache},
		{http.Header{"Cache-Control": {"no-store"}}, MinDocumentCache},
		{http.Header{"Cache-Control": {"public, max-age=3600"}}, time.Hour},
		{http.Header{"Cache-Control": {"max-age=999999999"}}, MaxDocumentCache},
		{http.Header{"Expires": {now.Add(2 * time.Hour).UTC().Format(http.TimeFormat)}}, 2 * time.Hour},
	} {
		got := cacheLifetime(tc.header, now)
		if got < tc.want-time.Second || got > tc.want+time.Second {
			t.Errorf("%v: %v, want %v", tc.header, got, tc.want)
		}
	}
}

func TestPathInsertedMetadata(t *testing.T) {
	e := newEnv(t, func(cfg *Config) { cfg.Issuer = "https://as.example/tenant" })
	res := e.do(mustGet(t, e.ts.URL+MetadataPath+"/tenant"))
	if res.status != 200 || !strings.Contains(res.body, `"issuer":"https://as.example/tenant"`) {
		t.Errorf("path-inserted metadata: %d %s", res.status, res.body)
	}
}

// A document is fetched once for as long as it is cached; one that could
// not be used is not fetched again for a minute.
func TestMetadataDocumentCaching(t *testing.T) {
	d := newDocServer(t)
	var fetchCount atomic.Int32
	var good atomic.Bool
	d.docs["/doc"] = func(w http.ResponseWriter, base string) {
		fetchCount.Add(1)
		id := base + "/doc"
		if !good.Load() {
			id = base + "/other"
		}
		w.Header().Set("Cache-Control", "max-age=600")
		_, _ = w.Write([]byte(docJSON(id, "")))
	}
	e := newEnv(t, withDocuments(d, true))
	_, challenge := pkce()
	fetches := 0
	try := func() int {
		defer func() { fetches = int(fetchCount.Load()) }()
		return e.authorize(authParams(d.URL+"/doc", "code_challenge", challenge, "code_challenge_method", "S256"), testUser).status
	}
	if try() != 400 || try() != 400 || fetches != 1 {
		t.Fatalf("a refused document: fetched %d times", fetches)
	}
	good.Store(true)
	if try() != 400 || fetches != 1 {
		t.Errorf("a refused document is fetched again within a minute: %d", fetches)
	}
	e.clock.Advance(time.Minute + time.Second)
	if try() != 200 || try() != 200 || fetches != 2 {
		t.Errorf("after a minute: fetched %d times", fetches)
	}
	e.clock.Advance(9 * time.Minute)
	if try() != 200 || fetches != 2 {
		t.Errorf("within its max-age: fetched %d times", fetches)
	}
	e.clock.Advance(2 * time.Minute)
	if try() != 200 || fetches != 3 {
		t.Errorf("after its max-age: fetched %d times", fetches)
	}
}
