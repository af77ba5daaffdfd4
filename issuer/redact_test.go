package issuer

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// bufferingWriter holds the response back, as Caddy's buffering recorders
// do, and says so.
type bufferingWriter struct {
	http.ResponseWriter
	status int
}

func (b *bufferingWriter) WriteHeader(s int)           { b.status = s }
func (b *bufferingWriter) Write(p []byte) (int, error) { return len(p), nil }
func (b *bufferingWriter) Buffered() bool              { return true }
func (b *bufferingWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

func (b *bufferingWriter) location(t *testing.T) url.Values {
	u, err := url.Parse(b.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// TestRedirectRedaction: the header map keeps a redacted code once the
// response went out, and the real one, reported through Unredacted, when a
// wrapper buffers it.
func TestRedirectRedaction(t *testing.T) {
	var unredacted int
	e := newEnv(t, func(c *Config) { c.Unredacted = func(*http.Request) { unredacted++ } })
	_, challenge := pkce()
	q := authParams("skip", "code_challenge", challenge, "code_challenge_method", "S256")
	get := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, AuthorizePath+"?"+q.Encode(), nil)
		r.Header.Set("X-Test-User", testUser)
		return r
	}

	// Streamed: the client got the code, the map afterwards has REDACTED.
	rec := httptest.NewRecorder()
	e.srv.Endpoint(AuthorizePath).ServeHTTP(rec, get())
	sent, _ := url.Parse(rec.Result().Header.Get("Location"))
	if code := sent.Query().Get("code"); !strings.HasPrefix(code, "cac_") {
		t.Fatalf("sent Location %s", sent)
	}
	after, _ := url.Parse(rec.Header().Get("Location"))
	if after.Query().Get("code") != "REDACTED" || after.Query().Get("state") != sent.Query().Get("state") ||
		after.Query().Get("iss") != sent.Query().Get("iss") {
		t.Fatalf("header map after the response: %s", after)
	}
	if unredacted != 0 {
		t.Fatal("Unredacted called for a streamed response")
	}

	// Buffered: the code stays so the replayed response works.
	rec = httptest.NewRecorder()
	bw := &bufferingWriter{ResponseWriter: rec}
	e.srv.Endpoint(AuthorizePath).ServeHTTP(bw, get())
	if code := bw.location(t).Get("code"); !strings.HasPrefix(code, "cac_") {
		t.Fatalf("buffered response lost its code: %v", bw.location(t))
	}
	if unredacted != 1 {
		t.Fatalf("Unredacted called %d times, want 1", unredacted)
	}
}
