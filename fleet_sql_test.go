package oauth2

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fleetPrefix keeps the fleet tests' tables apart from every other test's
// on the shared servers.
const fleetPrefix = "fleet_"

// fleetLease is the purge lease of the fleet tests: short, so a takeover
// after a SIGKILL is quick to see; production keeps the 2m default.
const fleetLease = 3 * time.Second

func TestFleetPostgres(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set OAUTH2_TEST_POSTGRES_DSN to run three gateways on PostgreSQL (scripts/services.sh env prints it)")
	}
	runFleetSQL(t, "postgres", "pgx", dsn)
}

func TestFleetMariaDB(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_MYSQL_DSN")
	if dsn == "" {
		t.Skip("set OAUTH2_TEST_MYSQL_DSN to run three gateways on MariaDB (scripts/services.sh env prints it)")
	}
	runFleetSQL(t, "mysql", "mysql", dsn)
}

func runFleetSQL(t *testing.T, dialect, driver, dsn string) {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dropPrefixed(t, db, driver, fleetPrefix)
	store := fmt.Sprintf(`sql {
		dialect %s
		dsn %q
		table_prefix %s
		create_schema
		purge_batch 10
		purge_lease %s
	}`, dialect, dsn, fleetPrefix, fleetLease)
	f := startFleet(t, store, "purge_every 1s")
	runFleetBasics(t, f)
	t.Run("one gateway purges at a time and another takes over after SIGKILL", func(t *testing.T) {
		runLeaseTakeover(t, f, db)
	})
}

// dropPrefixed drops this test's tables so each run starts from the
// bundled schema.
func dropPrefixed(t *testing.T, db *sql.DB, driver, prefix string) {
	t.Helper()
	for _, n := range prefixedTables(t, db, driver, prefix) {
		if _, err := db.Exec("DROP TABLE " + n); err != nil {
			t.Fatal(err)
		}
	}
}

// prefixedTables lists the tables of the connected database (MariaDB or
// PostgreSQL) whose names start with prefix.
func prefixedTables(t *testing.T, db *sql.DB, driver, prefix string) []string {
	t.Helper()
	q := `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()`
	if driver == "pgx" {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`
	}
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(strings.ToLower(n), prefix) {
			names = append(names, n)
		}
	}
	return names
}

// runLeaseTakeover loads a backlog of expired tokens that takes the purge
// several seconds, watches the lease row while the fleet works it off, kills
// the holder with SIGKILL mid-purge, and checks that nobody purges until its
// lease runs out and that another gateway then takes over.
func runLeaseTakeover(t *testing.T, f *fleet, db *sql.DB) {
	const backlog = 40000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < backlog; i += 1000 {
		var sb strings.Builder
		sb.WriteString("INSERT INTO " + fleetPrefix + "access_tokens (token_key, client_id, scope, issued_at, expires_at) VALUES ")
		for j := 0; j < 1000; j++ {
			var b [32]byte
			_, _ = rand.Read(b[:])
			if j > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, "('%s', 'svc', 'read', 1, 2)", hex.EncodeToString(b[:]))
		}
		if _, err := tx.ExecContext(ctx, sb.String()); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	pidOf := map[int]*gateway{}
	for _, g := range f.gws {
		pidOf[g.proc.cmd.Process.Pid] = g
	}
	type sample struct {
		holder *gateway
		until  int64
		rows   int64
		at     time.Time
	}
	read := func() sample {
		var holder string
		var s sample
		if err := db.QueryRowContext(ctx, "SELECT holder, lease_until FROM "+fleetPrefix+"purge_lease WHERE name = 'purge'").Scan(&holder, &s.until); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+fleetPrefix+"access_tokens WHERE expires_at < 1000").Scan(&s.rows); err != nil {
			t.Fatal(err)
		}
		// The holder is host-pid-random (see stores/sql newHolder).
		if parts := strings.Split(holder, "-"); len(parts) >= 3 {
			pid, _ := strconv.Atoi(parts[len(parts)-2])
			s.holder = pidOf[pid]
		}
		s.at = time.Now()
		return s
	}
	held := func(s sample) bool { return s.holder != nil && s.until > s.at.UnixMilli() }

	// Wait until a gateway holds the lease with most of the backlog left.
	var first sample
	for deadline := time.Now().Add(20 * time.Second); ; {
		first = read()
		if held(first) && first.rows < backlog {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no gateway took the purge lease within 20s (rows left %d)", first.rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if first.rows == 0 {
		t.Fatal("the backlog was purged before the test could watch it; raise backlog")
	}
	// Watch a second: the holder must not change while its lease is live.
	prev := first
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		s := read()
		if held(prev) && s.holder != prev.holder && prev.until > s.at.UnixMilli() {
			t.Fatalf("gateway %v took the lease while %s held it until %d", s.holder, prev.holder.name, prev.until)
		}
		prev = s
		time.Sleep(20 * time.Millisecond)
	}
	// Kill a gateway while it holds the lease: between two purge runs of a
	// loaded machine the lease can be momentarily past, so wait for a
	// sample that shows it held.
	for deadline := time.Now().Add(5 * time.Second); !held(prev) && prev.rows > 0; prev = read() {
		if time.Now().After(deadline) {
			t.Fatalf("no gateway held the purge lease for 5s with %d rows left", prev.rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
	victim := prev.holder
	if victim == nil || prev.rows == 0 {
		t.Fatalf("the backlog ran out while watching (rows %d); raise backlog", prev.rows)
	}
	killed := time.Now()
	if err := victim.proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.proc.done
	atKill := read()
	t.Logf("gateway %s held the lease purging %d rows (%d left when killed)", victim.name, backlog, atKill.rows)

	// Nobody purges while the dead holder's lease lives; then another takes
	// over. The lease was renewed at most one batch before the kill.
	var taken sample
	for deadline := killed.Add(fleetLease + 10*time.Second); ; {
		s := read()
		if s.holder != nil && s.holder != victim {
			taken = s
			break
		}
		if s.rows < atKill.rows {
			t.Fatalf("%d rows purged while the killed gateway's lease was live", atKill.rows-s.rows)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no gateway took over within %v of the kill", fleetLease+10*time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	takeover := taken.at.Sub(killed)
	t.Logf("gateway %s took over the purge lease %v after SIGKILL of %s (lease %v, purge_every 1s)",
		taken.holder.name, takeover.Round(10*time.Millisecond), victim.name, fleetLease)
	if takeover > fleetLease+2*time.Second {
		t.Errorf("takeover after %v, want within the lease (%v) plus one purge interval", takeover, fleetLease)
	}
	// The new holder purges: the backlog shrinks. How fast is the paced
	// batch rate within each run's purge_every budget, which on a loaded
	// 2-core machine running -race has been a few hundred rows a second
	// on MariaDB, so the test wants progress, not an empty table.
	const progress = 2000
	for deadline := time.Now().Add(90 * time.Second); ; {
		s := read()
		if s.rows == 0 || s.rows <= atKill.rows-progress {
			t.Logf("%d rows purged after the takeover, %d left", atKill.rows-s.rows, s.rows)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d rows purged in 90s after the takeover (%d left)", atKill.rows-s.rows, s.rows)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
