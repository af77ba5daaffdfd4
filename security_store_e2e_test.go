package oauth2

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
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
	const workers, maxFlood, probeEvery = 4, 60000, 1000
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
		// A refresh is refused too, before it spends the refresh token.
		resp, body = postForm(t, "/oauth2/token", url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {toks[0].RefreshToken}, "client_id": {"app"},
		}, "", "")
		if resp.StatusCode != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" {
			t.Errorf("refresh in a full cache: %d %v, want 503 temporarily_unavailable", resp.StatusCode, body)
		}
		if s := status(toks[0].AccessToken); s != http.StatusOK {
			t.Errorf("access token after a refused refresh: %d, want 200", s)
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

// replayRaceConfig stores codes and tokens in store, with a public PKCE
// client and a cheap bcrypt hash for alice.
func replayRaceConfig(store, aliceHash string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	default_bind 127.0.0.1
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	oauth2 {
		access_token_store %[1]s
		authorization_code_store %[1]s
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
			alice %[2]s
		}
		oauth2_server
	}
	oauth2_server
}
http://localhost:9081 {
	oauth2_guard read
	respond "ok"
}
`, store, aliceHash)
}

// raceStores are the stores the replay race runs on: the cache and SQLite
// always, the servers when their variables are set.
func raceStores(t *testing.T) map[string]string {
	m := map[string]string{
		"cache":  "cache",
		"sqlite": fmt.Sprintf("sql {\n\t\t\tdialect sqlite\n\t\t\tdsn %q\n\t\t\tcreate_schema\n\t\t}", filepath.Join(t.TempDir(), "race.db")),
	}
	if dsn := os.Getenv("OAUTH2_TEST_MYSQL_DSN"); dsn != "" {
		m["mariadb"] = fmt.Sprintf("sql {\n\t\t\tdialect mysql\n\t\t\tdsn %q\n\t\t\ttable_prefix race_\n\t\t\tcreate_schema\n\t\t}", dsn)
	} else {
		t.Log("set OAUTH2_TEST_MYSQL_DSN to run against MariaDB too")
	}
	if dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN"); dsn != "" {
		m["postgres"] = fmt.Sprintf("sql {\n\t\t\tdialect postgres\n\t\t\tdsn %q\n\t\t\ttable_prefix race_\n\t\t\tcreate_schema\n\t\t}", dsn)
	} else {
		t.Log("set OAUTH2_TEST_POSTGRES_DSN to run against PostgreSQL too")
	}
	if hosts := os.Getenv("OAUTH2_TEST_CASSANDRA_HOSTS"); hosts != "" {
		const keyspace = "oauth2_race"
		cluster := gocql.NewCluster(strings.Split(hosts, ",")...)
		cluster.Timeout = 30 * time.Second
		session, err := cluster.CreateSession()
		if err != nil {
			t.Fatal(err)
		}
		defer session.Close()
		if err := session.Query("CREATE KEYSPACE IF NOT EXISTS " + keyspace +
			" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").Exec(); err != nil {
			t.Fatal(err)
		}
		m["cassandra"] = fmt.Sprintf("cassandra {\n\t\t\thosts %s\n\t\t\tkeyspace %s\n\t\t\tcreate_schema\n\t\t}", strings.Join(strings.Split(hosts, ","), " "), keyspace)
	} else {
		t.Log("set OAUTH2_TEST_CASSANDRA_HOSTS to run against Cassandra too")
	}
	return m
}

// TestCodeReplayRace redeems each code several times at once (issue 8,
// item 2). One redemption wins; the others are replays, which revoke the
// grant family, and that revocation races the winner's insert of its
// tokens. Whichever comes first, the winner's tokens must not work
// afterwards: the store's revoked-family marker refuses an insert that
// comes second.
func TestCodeReplayRace(t *testing.T) {
	aliceCheap, _ := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	stores := raceStores(t)
	for _, name := range []string{"cache", "sqlite", "mariadb", "postgres", "cassandra"} {
		store, ok := stores[name]
		if !ok {
			continue
		}
		t.Run(name, func(t *testing.T) {
			startCaddy(t, replayRaceConfig(store, string(aliceCheap)))
			cfg := &oauth2.Config{
				ClientID:    "app",
				Endpoint:    oauth2.Endpoint{AuthURL: authBase + "/oauth2/authorize", TokenURL: authBase + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
				RedirectURL: "http://127.0.0.1:9999/cb",
				Scopes:      []string{"read"},
			}
			const rounds, racers = 25, 6
			winners, survivors := 0, 0
			for r := 0; r < rounds; r++ {
				verifier := oauth2.GenerateVerifier()
				code := authorize(t, cfg, oauth2.S256ChallengeOption(verifier))
				form := url.Values{
					"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"app"},
					"redirect_uri": {cfg.RedirectURL}, "code_verifier": {verifier},
				}
				var (
					wg    sync.WaitGroup
					mu    sync.Mutex
					won   []map[string]any
					codes []string
				)
				start := make(chan struct{})
				for i := 0; i < racers; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						resp, body := postForm(t, "/oauth2/token", form, "", "")
						mu.Lock()
						defer mu.Unlock()
						if resp.StatusCode == http.StatusOK {
							won = append(won, body)
						} else {
							codes = append(codes, fmt.Sprintf("%d %v", resp.StatusCode, body["error"]))
						}
					}()
				}
				close(start)
				wg.Wait()
				if len(won) > 1 {
					t.Fatalf("round %d: %d redemptions of one code succeeded", r, len(won))
				}
				for _, c := range codes {
					if c != "400 invalid_grant" {
						t.Fatalf("round %d: a replay answered %s, want 400 invalid_grant", r, c)
					}
				}
				if len(won) == 0 {
					continue // the replays revoked the family before the winner's insert: refused
				}
				winners++
				at, _ := won[0]["access_token"].(string)
				rt, _ := won[0]["refresh_token"].(string)
				alive := false
				if resp, _ := get(t, nil, apiBase+"/x", at); resp.StatusCode != http.StatusUnauthorized {
					alive = true
				}
				resp, body := postForm(t, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}, "", "")
				if resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_grant" {
					alive = true
				}
				if alive {
					survivors++
				}
			}
			t.Logf("%s: %d rounds of %d concurrent redemptions: %d winners got tokens, %d of them survived the replays' revocation",
				name, rounds, racers, winners, survivors)
			if survivors > 0 {
				t.Errorf("%d grants kept working after a replay of their code revoked them", survivors)
			}
		})
	}
}
