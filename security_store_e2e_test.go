package oauth2

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
)

// fullCacheConfig is the issue 8 scenario: tokens in a 1 MB cache of 16
// shards, codes in the default cache, a public PKCE client, a
// client_credentials client to flood the cache with, and cheap bcrypt
// hashes so that the flood is quick.
func fullCacheConfig(upstreamAddr, floodHash, aliceHash string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	default_bind 127.0.0.1
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	oauth2 {
		access_token_store cache {
			name full
			max_memory 1
			shards 16
		}
		client flood {
			secret_hash %s
			grant_types client_credentials
			scopes read
		}
		client app {
			redirect_uri http://127.0.0.1:9999/cb
			scopes read
			skip_consent
		}
	}
}
http://localhost:9080 {
	handle /oauth2/authorize {
		basic_auth {
			alice %s
		}
		oauth2_server
	}
	oauth2_server
}
http://localhost:9081 {
	oauth2_guard read
	reverse_proxy %s
}
`, floodHash, aliceHash, upstreamAddr)
}

// TestFullCacheRevocation fills the token cache until issuance fails and
// checks that revocation still works for every grant issued before (issue
// 8, item 1): each revoked refresh token fails to refresh and its access
// token is refused by the guard, and no live token was dropped on the way.
// Before the fix, bigcache silently evicted family indexes and tokens.
func TestFullCacheRevocation(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: floods the token endpoint with about 10,000 requests")
	}
	floodHash, _ := bcrypt.GenerateFromPassword([]byte("flood-secret"), bcrypt.MinCost)
	aliceCheap, _ := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	up := newUpstream(t)
	startCaddy(t, fullCacheConfig(up.Listener.Addr().String(), string(floodHash), string(aliceCheap)))
	ctx := context.Background()

	cfg := &oauth2.Config{
		ClientID:    "app",
		Endpoint:    oauth2.Endpoint{AuthURL: authBase + "/oauth2/authorize", TokenURL: authBase + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: "http://127.0.0.1:9999/cb",
		Scopes:      []string{"read"},
	}
	const grants = 60
	toks := make([]*oauth2.Token, grants)
	for i := range toks {
		verifier := oauth2.GenerateVerifier()
		code := authorize(t, cfg, oauth2.S256ChallengeOption(verifier))
		tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil || tok.RefreshToken == "" {
			t.Fatalf("grant %d: %v", i, err)
		}
		toks[i] = tok
	}
	status := func(tok string) int {
		resp, _ := get(t, nil, apiBase+"/me", tok)
		return resp.StatusCode
	}
	// lost counts grants whose access token no longer passes the guard
	// although nothing revoked it.
	lost := func() int {
		n := 0
		for _, tok := range toks {
			if status(tok.AccessToken) != http.StatusOK {
				n++
			}
		}
		return n
	}
	if n := lost(); n != 0 {
		t.Fatalf("%d fresh access tokens refused by the guard", n)
	}

	// Flood client_credentials tokens until the token endpoint refuses
	// with 503 temporarily_unavailable, checking now and then that the
	// grants' tokens are still there.
	const workers, maxFlood, probeEvery = 4, 20000, 1000
	var (
		issued, unavailable atomic.Int64
		other               sync.Map
		stop                atomic.Bool
	)
	form := url.Values{"grant_type": {"client_credentials"}}
	lostDuringFlood := 0
	for round := 0; !stop.Load() && issued.Load() < maxFlood; round++ {
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < probeEvery/workers && !stop.Load(); i++ {
					resp, body := postForm(t, "/oauth2/token", form, "flood", "flood-secret")
					switch {
					case resp.StatusCode == http.StatusOK:
						issued.Add(1)
					case resp.StatusCode == http.StatusServiceUnavailable && body["error"] == "temporarily_unavailable":
						unavailable.Add(1)
						stop.Store(true)
					default:
						other.Store(fmt.Sprintf("%d %v", resp.StatusCode, body), true)
						stop.Store(true)
					}
				}
			}()
		}
		wg.Wait()
		if n := lost(); n > 0 {
			lostDuringFlood = n
			break
		}
	}
	other.Range(func(k, _ any) bool { t.Errorf("flood: unexpected answer %s", k); return true })
	t.Logf("flood: %d client_credentials tokens issued, then %d answers 503 temporarily_unavailable", issued.Load(), unavailable.Load())
	if lostDuringFlood > 0 {
		t.Errorf("after %d flood tokens, %d of %d live access tokens were dropped without revocation", issued.Load(), lostDuringFlood, grants)
	}
	if unavailable.Load() == 0 {
		t.Errorf("%d tokens into a 1 MB cache and issuance never answered 503", issued.Load())
	} else {
		// Issuance stays refused while the cache is full.
		resp, body := postForm(t, "/oauth2/token", form, "flood", "flood-secret")
		if resp.StatusCode != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" {
			t.Errorf("issuance in a full cache: %d %v, want 503 temporarily_unavailable", resp.StatusCode, body)
		}
	}

	// Revoke every grant's refresh token: each then fails to refresh and
	// its access token is refused by the guard.
	refreshes, passes := 0, 0
	for i, tok := range toks {
		resp, _ := postForm(t, "/oauth2/revoke", url.Values{"token": {tok.RefreshToken}, "client_id": {"app"}}, "", "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke of refresh token %d: %d", i, resp.StatusCode)
		}
		resp, body := postForm(t, "/oauth2/token", url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"app"},
		}, "", "")
		if resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_grant" {
			refreshes++
			t.Logf("grant %d: refresh after revocation answered %d %v", i, resp.StatusCode, body)
		}
		if s := status(tok.AccessToken); s != http.StatusUnauthorized {
			passes++
			t.Logf("grant %d: access token after revocation answered %d", i, s)
		}
	}
	if refreshes > 0 || passes > 0 {
		t.Errorf("of %d revoked grants, %d refresh tokens still refresh and %d access tokens still pass the guard", grants, refreshes, passes)
	}
}
