// Command propagation measures, for bench/run.sh's fleet scenario, how long
// a revocation made through one gateway takes to stop the token on the
// others when their validation caches hold it: it issues a token on the
// first gateway, makes every other gateway cache it, revokes it on the
// first at a random point of the others' feed cycle, and times the first
// 401 on each other gateway. With -pg-dsn it also measures what the feed
// costs PostgreSQL: index scans of the feed table per second while the
// gateways idle, and the time of one feed read.
//
// Everything is loopback; the run is bounded by -n and -watch.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

func main() {
	auth := flag.String("auth", "", "comma-separated base URLs of the gateways' oauth2_server")
	guard := flag.String("guard", "", "comma-separated base URLs of the gateways' guarded routes, same order")
	client := flag.String("client", "bench", "client_id")
	secret := flag.String("secret", "bench-secret", "client secret")
	n := flag.Int("n", 100, "tokens to revoke")
	jitter := flag.Duration("jitter", 600*time.Millisecond, "random wait before each revocation")
	pgDSN := flag.String("pg-dsn", "", "PostgreSQL DSN for the feed's cost (optional)")
	table := flag.String("table", "", "the feed table, e.g. benchfleet_revocations")
	watch := flag.Duration("watch", 20*time.Second, "idle time over which to count feed reads")
	flag.Parse()
	auths, guards := strings.Split(*auth, ","), strings.Split(*guard, ",")
	if len(auths) < 2 || len(auths) != len(guards) {
		fail("need -auth and -guard with the same number (>= 2) of gateways")
	}
	hc := &http.Client{Timeout: 10 * time.Second}

	if *pgDSN != "" {
		feedCost(*pgDSN, *table, *watch)
	}

	var ds []time.Duration
	for i := 0; i < *n; i++ {
		tok := token(hc, auths[0], *client, *secret)
		for _, g := range append(guards[1:], guards[1:]...) {
			if st := get(hc, g, tok); st != 200 {
				fail(fmt.Sprintf("fresh token on %s: %d", g, st))
			}
		}
		time.Sleep(time.Duration(rand.Int64N(int64(*jitter) + 1)))
		if st := post(hc, auths[0]+"/oauth2/revoke", *client, *secret, url.Values{"token": {tok}}); st != 200 {
			fail(fmt.Sprintf("revoke: %d", st))
		}
		done := time.Now()
		for _, g := range guards[1:] {
			for {
				st := get(hc, g, tok)
				if st == 401 {
					ds = append(ds, time.Since(done))
					break
				}
				if st != 200 || time.Since(done) > 10*time.Second {
					fail(fmt.Sprintf("revoked token on %s: %d after %v", g, st, time.Since(done)))
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	pct := func(p float64) float64 { return float64(ds[int(float64(len(ds)-1)*p)].Microseconds()) / 1000 }
	fmt.Printf("PROPAGATION %d %.1f %.1f %.1f\n", len(ds), pct(0.5), pct(0.99), pct(1))
}

// feedCost counts index scans of the feed table while the gateways idle and
// times one read as the gateways make it.
func feedCost(dsn, table string, watch time.Duration) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		fail(err.Error())
	}
	defer db.Close()
	ctx := context.Background()
	scans := func() (idx, seq int64) {
		// Statistics are flushed at transaction end and read from a snapshot
		// per transaction; a fresh snapshot each time.
		_, _ = db.ExecContext(ctx, "SELECT pg_stat_clear_snapshot()")
		if err := db.QueryRowContext(ctx, "SELECT COALESCE(idx_scan, 0), COALESCE(seq_scan, 0) FROM pg_stat_user_tables WHERE relname = $1", table).Scan(&idx, &seq); err != nil {
			fail("reading pg_stat_user_tables: " + err.Error())
		}
		return
	}
	i0, s0 := scans()
	time.Sleep(watch)
	i1, s1 := scans()
	secs := watch.Seconds()
	const reads = 500
	start := time.Now()
	for i := 0; i < reads; i++ {
		rows, err := db.QueryContext(ctx, "SELECT event_id, event_kind, event_key, client_id, created_at FROM "+table+" WHERE created_at >= $1",
			time.Now().Add(-2500*time.Millisecond).UnixMilli())
		if err != nil {
			fail(err.Error())
		}
		for rows.Next() {
		}
		rows.Close()
	}
	per := time.Since(start) / reads
	var plan string
	_ = db.QueryRowContext(ctx, "EXPLAIN SELECT event_id FROM "+table+" WHERE created_at >= $1", time.Now().UnixMilli()).Scan(&plan)
	fmt.Printf("FEEDLOAD %.2f %.2f %d %s\n", float64(i1-i0)/secs, float64(s1-s0)/secs, per.Microseconds(), strings.ReplaceAll(plan, " ", "_"))
}

func token(hc *http.Client, base, client, secret string) string {
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	resp, err := hc.Do(req)
	if err != nil {
		fail(err.Error())
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		fail(fmt.Sprintf("token: %d %v", resp.StatusCode, err))
	}
	return body.AccessToken
}

func post(hc *http.Client, u, client, secret string, form url.Values) int {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	resp, err := hc.Do(req)
	if err != nil {
		fail(err.Error())
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func get(hc *http.Client, u, tok string) int {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		fail(err.Error())
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "propagation:", msg)
	os.Exit(1)
}
