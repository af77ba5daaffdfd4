package oauth2

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/token"
)

// Ports of the external-issuer hardening test.
const (
	hardenPort      = 20640
	hardenHTTPSPort = 20641
	hardenAdminPort = 20642
)

// mockIntrospection is another authorization server's introspection
// endpoint: it records every token it is asked about, answers from a map,
// and can be made to hang.
type mockIntrospection struct {
	*httptest.Server
	mu                    sync.Mutex
	received              []string
	active                map[string]map[string]any
	delay                 time.Duration
	inflight, maxInflight atomic.Int32
}

func newMockIntrospection(t *testing.T) *mockIntrospection {
	m := &mockIntrospection{active: map[string]map[string]any{}}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := m.inflight.Add(1)
		defer m.inflight.Add(-1)
		for cur := m.maxInflight.Load(); n > cur && !m.maxInflight.CompareAndSwap(cur, n); cur = m.maxInflight.Load() {
		}
		tok := r.PostFormValue("token")
		m.mu.Lock()
		m.received = append(m.received, tok)
		answer, ok := m.active[tok]
		delay := m.delay
		m.mu.Unlock()
		time.Sleep(delay)
		if !ok {
			answer = map[string]any{"active": false}
		}
		json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *mockIntrospection) got() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.received...)
}

// TestExternalIssuerHardening attacks a real Caddy's guard configured with
// two introspecting issuers (issue 16, items 2, 3, 5 and 12).
func TestExternalIssuerHardening(t *testing.T) {
	a, b := newMockIntrospection(t), newMockIntrospection(t)
	b.active["bt_alice"] = map[string]any{"active": true, "sub": "alice", "client_id": "b-app", "scope": "read"}
	up := newUpstream(t)
	self := fmt.Sprintf("http://127.0.0.1:%d", hardenPort)
	config := fmt.Sprintf(`{
	admin 127.0.0.1:%[3]d
	default_bind 127.0.0.1
	http_port %[1]d
	https_port %[2]d
	grace_period 1ns
	skip_install_trust
	persist_config off
	oauth2 {
		issuer %[4]s
		token_secret 0123456789abcdef0123456789abcdef
		client svc {
			secret_hash %[5]s
			grant_types client_credentials
			scopes read
		}
	}
}
%[4]s {
	handle /oauth2/* {
		oauth2_server
	}
	handle {
		oauth2_guard read {
			issuer %[6]s {
				audience api://orders
				introspection_endpoint %[6]s/introspect
				introspection_client guard secret
				introspection_max_concurrent 2
			}
			issuer %[7]s {
				audience api://orders
				introspection_endpoint %[7]s/introspect
				introspection_client guard secret
				token_prefix bt_
				subject_prefix b:
			}
		}
		reverse_proxy %[8]s {
			header_up X-User {http.auth.user.id}
			header_up X-Sub {oauth2.subject}
			header_up X-Iss {oauth2.issuer}
		}
	}
}
`, hardenPort, hardenHTTPSPort, hardenAdminPort, self, secretHash, a.URL, b.URL, up.Listener.Addr().String())
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	caddy := startCaddyProcess(t, path, hardenPort)

	call := func(t *testing.T, bearer string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", self+"/orders", nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	want := func(t *testing.T, bearer string, status int) {
		t.Helper()
		if resp := call(t, bearer); resp.StatusCode != status {
			t.Fatalf("%.10s…: %d, want %d\ncaddy log:\n%s", bearer, resp.StatusCode, status, caddy.log)
		}
	}

	t.Run("{oauth2.issuer} and subject_prefix", func(t *testing.T) {
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}
		req, _ := http.NewRequest("POST", self+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", "s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&tok)
		resp.Body.Close()
		if tok.AccessToken == "" {
			t.Fatalf("token endpoint: %s", resp.Status)
		}
		want(t, tok.AccessToken, 200)
		if h := up.last(t); h.Get("X-Iss") != self || h.Get("X-User") != "svc" {
			t.Fatalf("own token: upstream saw issuer %q user %q", h.Get("X-Iss"), h.Get("X-User"))
		}
		want(t, "bt_alice", 200)
		if h := up.last(t); h.Get("X-Iss") != b.URL || h.Get("X-User") != "b:alice" || h.Get("X-Sub") != "alice" {
			t.Fatalf("B's token: upstream saw issuer %q user %q subject %q", h.Get("X-Iss"), h.Get("X-User"), h.Get("X-Sub"))
		}
		if got := a.got(); len(got) != 0 {
			t.Fatalf("A was asked about %d tokens claimed by B or ours", len(got))
		}
	})

	t.Run("our own codes and refresh tokens never leave the gateway", func(t *testing.T) {
		code, _ := token.New(token.CodePrefix)
		refresh, _ := token.New(token.RefreshPrefix)
		for _, raw := range []string{code, refresh, "crt_x", "cat_garbled"} {
			want(t, raw, 401)
		}
		if got := append(a.got(), b.got()...); len(got) != 1 || got[0] != "bt_alice" {
			t.Fatalf("the issuers received %d values, want only B's own token", len(got))
		}
	})

	t.Run("a repeated made-up token is asked about once", func(t *testing.T) {
		for range 10 {
			want(t, "made-up-token", 401)
		}
		n := 0
		for _, raw := range a.got() {
			if raw == "made-up-token" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("A was asked %d times, want 1", n)
		}
	})

	t.Run("a slow issuer's slots run out: 503 with Retry-After, counted, logged once", func(t *testing.T) {
		a.mu.Lock()
		a.delay = 1500 * time.Millisecond
		a.mu.Unlock()
		var wg sync.WaitGroup
		var refused, retryAfter atomic.Int32
		for i := range 8 {
			wg.Go(func() {
				start := time.Now()
				resp := call(t, fmt.Sprintf("random-%d", i))
				if resp.StatusCode == 503 && time.Since(start) < time.Second {
					refused.Add(1)
					if resp.Header.Get("Retry-After") != "" {
						retryAfter.Add(1)
					}
				}
			})
			time.Sleep(10 * time.Millisecond)
		}
		// Meanwhile B's tokens pass at once.
		start := time.Now()
		want(t, "bt_alice", 200)
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("B's token took %v while A was full", took)
		}
		wg.Wait()
		if m := a.maxInflight.Load(); m > 2 {
			t.Fatalf("A had %d calls at once, want at most 2", m)
		}
		if refused.Load() < 6 || retryAfter.Load() != refused.Load() {
			t.Fatalf("%d of 8 refused at once (%d with Retry-After), want 6", refused.Load(), retryAfter.Load())
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", hardenAdminPort))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var overloaded float64
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, `caddy_oauth2_guard_requests_total{result="overloaded"}`) {
				fmt.Sscan(strings.Fields(line)[1], &overloaded)
			}
		}
		if overloaded < 6 {
			t.Fatalf("overloaded requests counted %v, want at least 6", overloaded)
		}
		if n := strings.Count(caddy.log.String(), "introspection refused"); n != 1 {
			t.Fatalf("%d log lines for the refusals, want 1:\n%s", n, caddy.log)
		}
	})
	if log := caddy.log.String(); strings.Contains(log, "bt_alice") || strings.Contains(log, "secret\"") {
		t.Error("a token or secret is in the log")
	}
}
