package oauth2

// Multi-gateway tests: three real Caddy processes (this test binary
// re-executed as `caddy run`, see restart_test.go), each with its own ports
// and admin endpoint, share one store, as a fleet of gateways behind a load
// balancer would. Ports 19700-19799: gateway i serves the endpoints on
// 19700+10i, the guard on 19701+10i and its admin API on 19790+i.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateway is one Caddy process of a fleet.
type gateway struct {
	name            string
	srv, api, admin int
	proc            *caddyProcess
	config          string // the Caddyfile's path
}

func (g *gateway) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", g.srv, path) }

// fleet is three gateways over one store.
type fleet struct {
	t   *testing.T
	gws []*gateway
	hc  *http.Client
}

// fleetConfig is the Caddyfile of gateway g; extra goes into the oauth2
// block, store is the store block used for codes and tokens.
func fleetConfig(g *gateway, store, extra string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	default_bind 127.0.0.1
	http_port %[2]d
	https_port %[3]d
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "fleet-test-secret-of-at-least-32-bytes"
		%[4]s
		access_token_store %[5]s
		authorization_code_store %[5]s
		client svc {
			secret_hash %[6]s
			redirect_uri http://127.0.0.1:9999/cb
			grant_types authorization_code refresh_token client_credentials
			scopes read
			skip_consent
		}
	}
}
http://127.0.0.1:%[2]d {
	handle /oauth2/authorize {
		basic_auth {
			alice %[7]s
		}
		oauth2_server
	}
	oauth2_server
}
http://127.0.0.1:%[8]d {
	oauth2_guard read
	respond "ok {http.auth.user.id}"
}
`, g.admin, g.srv, g.srv+50, extra, store, secretHash, aliceHash, g.api)
}

// startFleet starts three gateways A, B and C over the store block.
func startFleet(t *testing.T, store, extra string) *fleet {
	t.Helper()
	f := &fleet{t: t, hc: &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
	dir := t.TempDir()
	for i, name := range []string{"A", "B", "C"} {
		path := filepath.Join(dir, "Caddyfile."+name)
		g := &gateway{name: name, srv: 19700 + 10*i, api: 19701 + 10*i, admin: 19790 + i, config: path}
		if err := os.WriteFile(path, []byte(fleetConfig(g, store, extra)), 0o600); err != nil {
			t.Fatal(err)
		}
		// One after the other, each until its store has started (the
		// guard answers an unknown token 401, where it waits or answers
		// 503 before): two gateways creating the schema at once would test
		// create_schema, not the fleet.
		g.proc = startCaddyProcess(t, path, g.srv, g.api, g.admin)
		f.gws = append(f.gws, g)
		for deadline := time.Now().Add(60 * time.Second); f.guard(g, unknownToken) != 401; {
			if time.Now().After(deadline) {
				t.Fatalf("gateway %s's store did not start:\n%s", name, g.proc.log)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Cleanup(func() {
		f.hc.CloseIdleConnections()
		if t.Failed() {
			for _, g := range f.gws {
				t.Logf("log of gateway %s:\n%s", g.name, tail(g.proc.log.String(), 60))
			}
		}
	})
	return f
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// post sends a form to one of g's endpoints as client svc and returns the
// status and the decoded JSON body.
func (f *fleet) post(g *gateway, path string, form url.Values) (int, map[string]any) {
	req, _ := http.NewRequest(http.MethodPost, g.url(path), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc", "s3cret")
	resp, err := f.hc.Do(req)
	if err != nil {
		f.t.Errorf("POST %s on %s: %v", path, g.name, err)
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// clientToken issues a client_credentials access token on g; "" and the
// status when it is refused.
func (f *fleet) clientToken(g *gateway) (string, int) {
	status, body := f.post(g, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
	tok, _ := body["access_token"].(string)
	return tok, status
}

// code runs the authorization request on g as alice and returns the code,
// or "" and the status of the answer that carried none; a redirect with
// error=temporarily_unavailable (RFC 6749 §4.1.2.1, how the authorization
// endpoint reports a store failure) counts as 503.
func (f *fleet) code(g *gateway) (string, int) {
	q := url.Values{"response_type": {"code"}, "client_id": {"svc"}, "redirect_uri": {"http://127.0.0.1:9999/cb"},
		"scope": {"read"}, "state": {"s"}}
	req, _ := http.NewRequest(http.MethodGet, g.url("/oauth2/authorize?"+q.Encode()), nil)
	req.SetBasicAuth("alice", "alice-password")
	resp, err := f.hc.Do(req)
	if err != nil {
		f.t.Errorf("authorize on %s: %v", g.name, err)
		return "", 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode/100 != 3 || loc == nil || loc.Query().Get("code") == "" {
		if loc != nil && loc.Query().Get("error") == "temporarily_unavailable" {
			return "", 503
		}
		return "", resp.StatusCode
	}
	return loc.Query().Get("code"), resp.StatusCode
}

// redeem exchanges a code on g; it returns the status and the tokens.
func (f *fleet) redeem(g *gateway, code string) (int, string, string) {
	status, body := f.post(g, "/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {"http://127.0.0.1:9999/cb"}})
	at, _ := body["access_token"].(string)
	rt, _ := body["refresh_token"].(string)
	return status, at, rt
}

// refresh uses a refresh token on g.
func (f *fleet) refresh(g *gateway, rt string) (int, string, string) {
	status, body := f.post(g, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	at, _ := body["access_token"].(string)
	nrt, _ := body["refresh_token"].(string)
	return status, at, nrt
}

// revoke revokes a token on g (RFC 7009).
func (f *fleet) revoke(g *gateway, tok string) int {
	status, _ := f.post(g, "/oauth2/revoke", url.Values{"token": {tok}})
	return status
}

// guard presents tok to g's guard and returns the status.
func (f *fleet) guard(g *gateway, tok string) int {
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", g.api), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := f.hc.Do(req)
	if err != nil {
		f.t.Errorf("guard on %s: %v", g.name, err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// expectGuard checks the status of tok on every gateway.
func (f *fleet) expectGuard(what, tok string, want int) {
	f.t.Helper()
	for _, g := range f.gws {
		if got := f.guard(g, tok); got != want {
			f.t.Errorf("%s on gateway %s: guard answered %d, want %d", what, g.name, got, want)
		}
	}
}

// runFleetBasics proves the fleet shares one truth: issuance on one gateway
// is seen at once by the others, a code is redeemed once across the fleet,
// and a refresh replay on one gateway revokes the grant on all.
func runFleetBasics(t *testing.T, f *fleet) {
	a, b, c := f.gws[0], f.gws[1], f.gws[2]

	t.Run("token issued on A passes on B and C at once", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			tok, status := f.clientToken(a)
			if tok == "" {
				t.Fatalf("client_credentials on A: %d", status)
			}
			f.expectGuard("fresh token", tok, 200)
		}
	})

	t.Run("code issued on A redeems on B once; a replay on C revokes it", func(t *testing.T) {
		code, status := f.code(a)
		if code == "" {
			t.Fatalf("authorize on A: %d", status)
		}
		status, at, _ := f.redeem(b, code)
		if status != 200 {
			t.Fatalf("redeem on B: %d", status)
		}
		f.expectGuard("token of a redeemed code", at, 200)
		if status, _, _ := f.redeem(c, code); status != 400 {
			t.Fatalf("second redemption on C: %d, want 400", status)
		}
		// RFC 6749 §4.1.2: the replay revokes what the first redemption got.
		f.expectGuard("token of a replayed code", at, 401)
	})

	t.Run("code issued on A is never redeemed twice under 50 concurrent redemptions", func(t *testing.T) {
		code, status := f.code(a)
		if code == "" {
			t.Fatalf("authorize on A: %d", status)
		}
		const n = 50
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			counts = map[int]int{}
			issued []string
			start  = make(chan struct{})
		)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(g *gateway) {
				defer wg.Done()
				<-start
				status, at, _ := f.redeem(g, code)
				mu.Lock()
				counts[status]++
				if status == 200 {
					issued = append(issued, at)
				}
				mu.Unlock()
			}(f.gws[i%3])
		}
		close(start)
		wg.Wait()
		t.Logf("50 concurrent redemptions over A, B, C: %v", counts)
		// One redemption wins the store; the replays revoke the grant, and
		// the winner too is refused when a replay revokes it before its
		// tokens are stored (stores.ErrRevoked). 503s are requests turned
		// away before the store (the client-secret verification limit) or,
		// on Cassandra, losers timing out in Paxos contention.
		if counts[200] > 1 {
			t.Fatalf("%d redemptions succeeded, want at most 1 (%v)", counts[200], counts)
		}
		if counts[400] == 0 || counts[200]+counts[400]+counts[503] != n {
			t.Errorf("want one winner or none, the rest 400 or 503: %v", counts)
		}
		for _, at := range issued {
			f.expectGuard("token of a replayed code", at, 401)
		}
	})

	t.Run("refresh replay on C revokes the family on every gateway", func(t *testing.T) {
		code, status := f.code(a)
		if code == "" {
			t.Fatalf("authorize on A: %d", status)
		}
		status, at1, rt1 := f.redeem(a, code)
		if status != 200 || rt1 == "" {
			t.Fatalf("redeem on A: %d", status)
		}
		status, at2, rt2 := f.refresh(b, rt1)
		if status != 200 || rt2 == "" {
			t.Fatalf("refresh on B: %d", status)
		}
		f.expectGuard("rotated access token", at2, 200)
		if status, _, _ := f.refresh(c, rt1); status != 400 {
			t.Fatalf("replay on C: %d, want 400", status)
		}
		f.expectGuard("first access token after the replay", at1, 401)
		f.expectGuard("rotated access token after the replay", at2, 401)
		if status, _, _ := f.refresh(a, rt2); status != 400 {
			t.Errorf("the rotated refresh token after the replay on A: %d, want 400", status)
		}
	})

	t.Run("revocation on B is seen on A and C", func(t *testing.T) {
		tok, status := f.clientToken(c)
		if tok == "" {
			t.Fatalf("client_credentials on C: %d", status)
		}
		f.expectGuard("fresh token", tok, 200)
		if status := f.revoke(b, tok); status != 200 {
			t.Fatalf("revoke on B: %d", status)
		}
		f.expectGuard("revoked token", tok, 401)
	})
}

// unknownToken is well formed, so the guard asks the store about it.
var unknownToken = "cat_" + strings.Repeat("A", 43)
