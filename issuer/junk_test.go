package issuer

import (
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tokengate/caddy-oauth2/token"
)

// junkValues are parameter values that have broken parsers elsewhere.
func junkValues(t testing.TB) []string {
	code, _ := token.New(token.CodePrefix)
	access, _ := token.New(token.AccessPrefix)
	refresh, _ := token.New(token.RefreshPrefix)
	return []string{
		"", " ", "\x00", "\xff\xfe", "%", "%zz", "+", "&", "=", "\r\n", "<script>alert(1)</script>", `"'`,
		"é", "\u202e", strings.Repeat("a", 5000), strings.Repeat("%", 300), "code", "token", "S256", "plain",
		"authorization_code", "refresh_token", "client_credentials", "read", "read write admin", "read  write",
		"conf", "pub", "svc", "nobody", confRedirect, pubRedirect, confRedirect + "/", "javascript:alert(1)",
		code, access, refresh, code[:len(code)-1], access + "=", "cac_", "cat_", "crt_", strings.Repeat("A", 43),
		strings.Repeat("~", 128), strings.Repeat("~", 129), "-1", "0", "99999999999999999999", "approve", "deny",
		"1893553445.AAAA", ".", "..",
	}
}

var junkKeys = []string{
	"grant_type", "code", "redirect_uri", "client_id", "client_secret", "code_verifier", "refresh_token", "scope",
	"token", "token_type_hint", "response_type", "state", "code_challenge", "code_challenge_method", "csrf_token",
	"decision", "", "=", "a[b]", "\x00",
}

var junkAuth = []string{
	"", "Basic", "Basic ", "Basic !!!", "Bearer x", "Basic " + base64.StdEncoding.EncodeToString([]byte("conf")),
	"Basic " + base64.StdEncoding.EncodeToString([]byte(":")),
	"Basic " + base64.StdEncoding.EncodeToString([]byte("%zz:%zz")),
	"Basic " + base64.StdEncoding.EncodeToString([]byte("svc:"+svcSecret)),
	"Basic " + base64.StdEncoding.EncodeToString([]byte("pub:")),
	"Basic " + base64.StdEncoding.EncodeToString([]byte("conf:"+url.QueryEscape(confSecret))),
	"Basic " + base64.StdEncoding.EncodeToString([]byte("nobody:"+strings.Repeat("x", 200))),
}

var junkPaths = []string{AuthorizePath, TokenPath, RevokePath, IntrospectPath, MetadataPath}

// serveJunk sends one request straight to the handler; a panic fails the
// test.
func serveJunk(t testing.TB, s *Server, method, path, ctype, auth, user, query, body string) int {
	r := httptest.NewRequest(method, "http://auth.example"+path, strings.NewReader(body))
	r.URL.RawQuery = query
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	if user != "" {
		r.Header.Set("X-Test-User", user)
	}
	w := httptest.NewRecorder()
	s.Endpoint(path).ServeHTTP(w, r)
	return w.Code
}

func TestJunkInputsNever5xx(t *testing.T) {
	e := newEnv(t)
	values := junkValues(t)
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	methods := []string{"GET", "POST", "POST", "POST", "PUT", "HEAD", "OPTIONS"}
	ctypes := []string{"application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8", "", "text/plain", "multipart/form-data", ";;;"}
	for i := range 3000 {
		var parts []string
		for range rng.IntN(8) {
			k, v := pick(junkKeys), pick(values)
			if rng.IntN(4) == 0 { // raw, possibly malformed encoding
				parts = append(parts, k+"="+v)
			} else {
				parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(v))
			}
		}
		enc := strings.Join(parts, "&")
		method, path := pick(methods), pick(junkPaths)
		query, body := "", ""
		if rng.IntN(2) == 0 {
			query = enc
		} else {
			body = enc
		}
		user := ""
		if rng.IntN(3) > 0 {
			user = testUser
		}
		status := serveJunk(t, e.srv, method, path, pick(ctypes), pick(junkAuth), user, query, body)
		if status >= 500 {
			t.Fatalf("request %d: %s %s?%s body %q: status %d", i, method, path, query, body, status)
		}
	}
}

// FuzzEndpoints runs its seeds as a regular test; `go test -fuzz
// FuzzEndpoints ./issuer` explores further.
func FuzzEndpoints(f *testing.F) {
	for _, p := range junkPaths {
		f.Add(p, "POST", "grant_type=authorization_code&code=cac_x&client_id=pub", "")
		f.Add(p, "GET", "", "response_type=code&client_id=conf&state=%zz")
		f.Add(p, "POST", "token=crt_&client_id=pub", "Basic cHViOg==")
	}
	clock := newClock()
	store := newFakeStore(clock.Now)
	s, err := New(Config{Clients: testClients(f), Codes: store, Tokens: store, Hasher: token.NewHasher([]byte("k")),
		Subject: func(r *http.Request) string { return r.Header.Get("X-Test-User") }, Now: clock.Now})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path, method, form, auth string) {
		if s.Endpoint(path) == nil || !validMethod(method) {
			return
		}
		for _, q := range []bool{false, true} {
			query, body := "", form
			if q {
				query, body = form, ""
			}
			if status := serveJunk(t, s, method, path, "application/x-www-form-urlencoded", auth, testUser, query, body); status >= 500 {
				t.Fatalf("%s %s %q: status %d", method, path, form, status)
			}
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
