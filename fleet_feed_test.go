package oauth2

import (
	"database/sql"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// fleetCache is the validation cache of the propagation tests: long, so
// that only the revocation feed can explain a revoked token failing on
// another gateway within a second.
const fleetCache = "validation_cache 60s"

// propagationLimit is the promise: a revocation answered on one gateway
// stops the token on every other within this.
const propagationLimit = time.Second

// measurePropagation revokes n tokens, each cached on B and C beforehand,
// through A (and replays refresh tokens on C for families), and returns
// the times from the revoke response to the first 401 on the other
// gateways.
func measurePropagation(t *testing.T, f *fleet, n int) []time.Duration {
	t.Helper()
	a, b, c := f.gws[0], f.gws[1], f.gws[2]
	var out []time.Duration
	for i := 0; i < n; i++ {
		var victim string
		family := i%4 == 3
		var rt string
		if family {
			code, st := f.code(a)
			if code == "" {
				t.Fatalf("authorize: %d", st)
			}
			var s int
			s, victim, rt = f.redeem(a, code)
			if s != 200 {
				t.Fatalf("redeem: %d", s)
			}
			if s, _, _ := f.refresh(b, rt); s != 200 {
				t.Fatalf("refresh: %d", s)
			}
		} else {
			var st int
			if victim, st = f.clientToken(a); victim == "" {
				t.Fatalf("client_credentials: %d", st)
			}
		}
		// Twice each: the second answers from the cache.
		for _, g := range []*gateway{b, c, b, c} {
			if st := f.guard(g, victim); st != 200 {
				t.Fatalf("fresh token on %s: %d", g.name, st)
			}
		}
		// Revoke at a random point of the other gateways' read cycle; else
		// the loop locks onto it and measures the worst case every time.
		time.Sleep(time.Duration(mrand.Int64N(int64(600 * time.Millisecond))))
		var done time.Time
		if family {
			// A refresh replay on C revokes the family.
			if st, _, _ := f.refresh(c, rt); st != 400 {
				t.Fatalf("replay on C: %d", st)
			}
		} else if st := f.revoke(a, victim); st != 200 {
			t.Fatalf("revoke on A: %d", st)
		}
		done = time.Now()
		for _, g := range []*gateway{b, c} {
			if family && g == c {
				continue // the replaying gateway evicted it itself
			}
			for {
				st := f.guard(g, victim)
				if st == 401 {
					out = append(out, time.Since(done))
					break
				}
				if st != 200 {
					t.Fatalf("revoked token on %s: %d", g.name, st)
				}
				if time.Since(done) > 5*time.Second {
					t.Fatalf("revoked token still passes on %s after 5s", g.name)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	return out
}

// percentile returns the p-th percentile (0-100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func runFleetPropagation(t *testing.T, f *fleet) {
	t.Run("admin revoke by user", func(t *testing.T) { runAdminRevokePropagation(t, f) })
	ds := measurePropagation(t, f, 20)
	p50, p99, worst := percentile(ds, 50), percentile(ds, 99), percentile(ds, 100)
	t.Logf("revocation propagation over %d revocations (cache 60s, feed 500ms): p50 %v, p99 %v, max %v",
		len(ds), p50.Round(time.Millisecond), p99.Round(time.Millisecond), worst.Round(time.Millisecond))
	if worst > propagationLimit {
		t.Errorf("a revocation took %v to reach another gateway, want at most %v", worst, propagationLimit)
	}
}

func TestFleetFeedPostgres(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set OAUTH2_TEST_POSTGRES_DSN to run three gateways on PostgreSQL (scripts/services.sh env prints it)")
	}
	runFleetFeedSQL(t, "postgres", "pgx", dsn)
}

func TestFleetFeedMariaDB(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_MYSQL_DSN")
	if dsn == "" {
		t.Skip("set OAUTH2_TEST_MYSQL_DSN to run three gateways on MariaDB (scripts/services.sh env prints it)")
	}
	runFleetFeedSQL(t, "mysql", "mysql", dsn)
}

func runFleetFeedSQL(t *testing.T, dialect, driver, dsn string) {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dropPrefixed(t, db, driver, fleetPrefix)
	f := startFleet(t, fmt.Sprintf(`sql {
		dialect %s
		dsn %q
		table_prefix %s
		create_schema
	}`, dialect, dsn, fleetPrefix), fleetCache)
	t.Run("a revocation on one gateway stops the token on the others within 1s", func(t *testing.T) {
		runFleetPropagation(t, f)
	})
	if driver == "pgx" {
		t.Run("reloads leave one feed reader per gateway", func(t *testing.T) {
			runReloadReaders(t, f, db)
		})
	}
	t.Run("a gateway that loses the feed stops answering from its cache", func(t *testing.T) {
		a, b := f.gws[0], f.gws[1]
		tok, _ := f.clientToken(a)
		code, _ := f.code(a)
		_, _, rt1 := f.redeem(a, code)
		_, at2, _ := f.refresh(b, rt1)
		for _, x := range []string{tok, tok, at2, at2} {
			if st := f.guard(b, x); st != 200 {
				t.Fatalf("fresh token on B: %d", st)
			}
		}
		if _, err := db.Exec("ALTER TABLE " + fleetPrefix + "revocations RENAME TO " + fleetPrefix + "revocations_away"); err != nil {
			t.Fatal(err)
		}
		restored := false
		restore := func() {
			if !restored {
				restored = true
				if _, err := db.Exec("ALTER TABLE " + fleetPrefix + "revocations_away RENAME TO " + fleetPrefix + "revocations"); err != nil {
					t.Error(err)
				}
			}
		}
		defer restore()
		// Revoking cannot tell the others: it answers 503 (retry) and
		// revokes nothing.
		if st := f.revoke(a, tok); st != 503 {
			t.Errorf("revoke with the feed gone: %d, want 503", st)
		}
		// A replay revokes its family in the store all the same; B, which
		// cannot read the feed, stops answering it from its cache.
		if st, _, _ := f.refresh(a, rt1); st != 400 {
			t.Errorf("replay with the feed gone: %d, want 400", st)
		}
		start := time.Now()
		for f.guard(b, at2) != 401 {
			if time.Since(start) > 5*time.Second {
				t.Fatal("B kept answering 200 from its cache without the feed")
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("without the feed, B stopped answering from its cache after %v", time.Since(start).Round(time.Millisecond))
		if st := f.guard(b, tok); st != 200 {
			t.Errorf("the token whose revocation answered 503 on B: %d, want 200 (nothing was revoked)", st)
		}
		if !strings.Contains(b.proc.log.String(), "revocation feed unreadable") {
			t.Error("B's log does not say the feed was lost")
		}
		restore()
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(b.proc.log.String(), "revocation feed readable again") {
			if time.Now().After(deadline) {
				t.Fatal("B's log does not say the feed came back")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if st := f.revoke(a, tok); st != 200 {
			t.Errorf("revoke again once the feed is back: %d", st)
		}
		start = time.Now()
		for f.guard(b, tok) != 401 {
			if time.Since(start) > propagationLimit {
				t.Fatal("the revocation did not reach B once the feed was back")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestFleetFeedCassandra(t *testing.T) {
	v := os.Getenv("OAUTH2_TEST_CASSANDRA_CLUSTER_HOSTS")
	if v == "" {
		t.Skip("set OAUTH2_TEST_CASSANDRA_CLUSTER_HOSTS to run three gateways on a three-node Cassandra (scripts/cassandra.sh cluster env prints it)")
	}
	hosts := strings.Split(v, ",")
	f := startFleet(t, fmt.Sprintf(`cassandra {
		hosts %s
		keyspace oauth2_fleet
		read_consistency QUORUM
		write_consistency QUORUM
		create_schema
	}`, strings.Join(hosts, " ")), fleetCache)
	t.Run("a revocation on one gateway stops the token on the others within 1s", func(t *testing.T) {
		runFleetPropagation(t, f)
	})
}

// runReloadReaders reloads gateway B five times and checks, by the reads
// PostgreSQL counts on the feed table, that the fleet still reads it about
// six times a second (3 gateways x 2): a reader left behind by a reload
// would add two a second each.
func runReloadReaders(t *testing.T, f *fleet, db *sql.DB) {
	rate := func() float64 {
		read := func() int64 {
			var n int64
			_, _ = db.Exec("SELECT pg_stat_clear_snapshot()")
			if err := db.QueryRow("SELECT COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = $1",
				fleetPrefix+"revocations").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		// PostgreSQL publishes table statistics about once a second.
		time.Sleep(1500 * time.Millisecond)
		a, start := read(), time.Now()
		time.Sleep(5 * time.Second)
		return float64(read()-a) / time.Since(start).Seconds()
	}
	before := rate()
	b := f.gws[1]
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(b.config)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		// A changed config, or Caddy skips the reload.
		cfg := append(append([]byte(nil), orig...), fmt.Sprintf("\n# reload %d\nhttp://127.0.0.1:%d {\n\trespond %d\n}\n", i, b.srv+5, i)...)
		if err := os.WriteFile(b.config, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "reload", "--config", b.config, "--adapter", "caddyfile", "--address", fmt.Sprintf("127.0.0.1:%d", b.admin))
		cmd.Env = append(os.Environ(), childEnv+"=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("reload %d: %v\n%s", i, err, out)
		}
	}
	after := rate()
	t.Logf("feed reads on PostgreSQL: %.1f/s before 5 reloads of B, %.1f/s after", before, after)
	if after > before+4 { // a leak per reload would add 10/s
		t.Errorf("feed reads went from %.1f/s to %.1f/s over 5 reloads: a reader leaked", before, after)
	}
	if st := f.guard(b, unknownToken); st != 401 {
		t.Errorf("B after the reloads: %d", st)
	}
}

// runAdminRevokePropagation revokes everything of alice through gateway A's
// admin API and times her token's first 401 on B and C, which cached it.
func runAdminRevokePropagation(t *testing.T, f *fleet) {
	a, b, c := f.gws[0], f.gws[1], f.gws[2]
	code, st := f.code(a)
	if code == "" {
		t.Fatalf("authorize: %d", st)
	}
	st, at, _ := f.redeem(a, code)
	if st != 200 {
		t.Fatalf("redeem: %d", st)
	}
	for _, g := range []*gateway{b, c, b, c} {
		if st := f.guard(g, at); st != 200 {
			t.Fatalf("alice's token on %s: %d", g.name, st)
		}
	}
	resp, err := f.hc.Post(fmt.Sprintf("http://127.0.0.1:%d/oauth2/revoke", a.admin), "application/json",
		strings.NewReader(`{"subject": "alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("admin revoke on A: %d", resp.StatusCode)
	}
	done := time.Now()
	for _, g := range []*gateway{b, c} {
		for {
			st := f.guard(g, at)
			if st == 401 {
				break
			}
			if st != 200 || time.Since(done) > 5*time.Second {
				t.Fatalf("alice's token on %s: %d after %v", g.name, st, time.Since(done))
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("admin revoke of alice on A: her token refused on %s after %v", g.name, time.Since(done).Round(time.Millisecond))
		if d := time.Since(done); d > propagationLimit {
			t.Errorf("the admin revoke reached %s after %v, want at most %v", g.name, d, propagationLimit)
		}
	}
}
