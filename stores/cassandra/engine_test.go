package cassandra

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// hostsEnv names the Cassandra the tests use; scripts/cassandra.sh start
// runs one, and scripts/cassandra.sh env prints the setting.
const hostsEnv = "OAUTH2_TEST_CASSANDRA_HOSTS"

// testKeyspace is created by the tests with SimpleStrategy, RF 1.
const testKeyspace = "oauth2_test"

func testHosts(t *testing.T) []string {
	t.Helper()
	v := os.Getenv(hostsEnv)
	if v == "" {
		t.Skipf("%s is not set: run scripts/cassandra.sh start and eval \"$(scripts/cassandra.sh env)\" to test against Cassandra", hostsEnv)
	}
	return strings.Split(v, ",")
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var keyspaceOnce sync.Map // keyspace name -> *sync.Once

// createKeyspace creates keyspace ks (SimpleStrategy) once per test binary.
func createKeyspace(t *testing.T, hosts []string, ks string, rf int) {
	t.Helper()
	o, _ := keyspaceOnce.LoadOrStore(ks, new(sync.Once))
	var err error
	o.(*sync.Once).Do(func() {
		c := gocql.NewCluster(hosts...)
		c.Timeout = 30 * time.Second
		var s *gocql.Session
		if s, err = c.CreateSession(); err != nil {
			return
		}
		defer s.Close()
		err = s.Query("CREATE KEYSPACE IF NOT EXISTS " + ks + " WITH replication = " +
			"{'class': 'SimpleStrategy', 'replication_factor': " + string(rune('0'+rf)) + "}").Exec()
		if err == nil {
			err = s.AwaitSchemaAgreement(context.Background())
		}
	})
	if err != nil {
		t.Fatalf("creating keyspace %s: %v", ks, err)
	}
}

// newTestEngine returns a started engine on the test keyspace, with the
// tables created, closed at the end of the test.
func newTestEngine(t *testing.T, cons Consistencies, obs *queryObserver) *Engine {
	t.Helper()
	hosts := testHosts(t)
	createKeyspace(t, hosts, testKeyspace, 1)
	cfg := Config{Hosts: hosts, Keyspace: testKeyspace, Consistency: cons, CreateSchema: true, Timeout: 10 * time.Second}
	if obs != nil {
		cfg.QueryObserver, cfg.BatchObserver = obs, obs
	}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if _, err := e.Start(testCtx(t, 60*time.Second)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return e
}

func defaults(t *testing.T) Consistencies {
	t.Helper()
	c, err := ParseConsistencies("", "", "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestContract runs the store contract suite at the default consistency
// levels (ONE reads, ANY writes), where only the lightweight transactions
// keep codes and refresh tokens single use.
func TestContract(t *testing.T) {
	e := newTestEngine(t, defaults(t), nil)
	s, err := e.sess(testCtx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(t *testing.T) stores.Store {
		for _, table := range schemaTables {
			if err := s.Query("TRUNCATE " + testKeyspace + "." + table).ExecContext(testCtx(t, 60*time.Second)); err != nil {
				t.Fatalf("truncate %s: %v", table, err)
			}
		}
		return e
	}, storetest.Options{SelfExpiring: true})
}

// TestRows checks what lands in Cassandra: TTLs on every row, family index
// rows, nothing for expired records, consumed markers that outlive rotation.
func TestRows(t *testing.T) {
	e := newTestEngine(t, defaults(t), nil)
	ctx := testCtx(t, 30*time.Second)
	s, err := e.sess(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Millisecond)
	fam := "fam-" + storetest.Key()[:16]
	rt := &stores.Token{Key: storetest.Key(), Kind: stores.RefreshToken, ClientID: "c", Family: fam, IssuedAt: now, ExpiresAt: now.Add(90 * time.Second)}
	dead := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, ClientID: "c", Family: fam, IssuedAt: now, ExpiresAt: now.Add(-time.Second)}
	if err := e.InsertTokens(ctx, rt, dead); err != nil {
		t.Fatal(err)
	}
	var ttlSecs int
	if err := s.Query("SELECT TTL(client_id) FROM "+testKeyspace+".tokens WHERE kind = ? AND key = ?", "refresh_token", rt.Key).Scan(&ttlSecs); err != nil {
		t.Fatal(err)
	}
	if ttlSecs < 85 || ttlSecs > 90 {
		t.Fatalf("token TTL %d, want about 90", ttlSecs)
	}
	var n int
	if err := s.Query("SELECT COUNT(*) FROM "+testKeyspace+".tokens_by_family WHERE family = ?", fam).Scan(&n); err != nil || n != 1 {
		t.Fatalf("family index rows = %d, %v; want 1 (the expired token is not written)", n, err)
	}
	if err := s.Query("SELECT TTL(client_id) FROM "+testKeyspace+".tokens WHERE kind = ? AND key = ?", "access_token", dead.Key).Scan(&ttlSecs); !errors.Is(err, gocql.ErrNotFound) {
		t.Fatalf("expired token written: %v", err)
	}
	if _, err := e.ConsumeRefreshToken(ctx, rt.Key); err != nil {
		t.Fatal(err)
	}
	if err := s.Query("SELECT TTL(consumer) FROM "+testKeyspace+".consumed WHERE kind = ? AND key = ?", "refresh_token", rt.Key).Scan(&ttlSecs); err != nil || ttlSecs < 85 || ttlSecs > 90 {
		t.Fatalf("consumed marker TTL %d, %v; want about 90", ttlSecs, err)
	}
	got, err := e.ConsumeRefreshToken(ctx, rt.Key)
	if !errors.Is(err, stores.ErrConsumed) || got == nil || got.Family != fam {
		t.Fatalf("replay of a rotated refresh token = %+v, %v; want the token and ErrConsumed", got, err)
	}
	if err := e.RevokeFamily(ctx, fam, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Query("SELECT COUNT(*) FROM "+testKeyspace+".tokens_by_family WHERE family = ?", fam).Scan(&n); err != nil || n != 0 {
		t.Fatalf("family index rows after RevokeFamily = %d, %v; want 0", n, err)
	}
	if _, err := e.ConsumeRefreshToken(ctx, rt.Key); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("replay after family revocation: %v, want ErrNotFound", err)
	}
}

// queryObserver records the consistency levels of every statement.
type queryObserver struct {
	mu   sync.Mutex
	seen []observed
}

type observed struct {
	stmt           string
	cons, serial   gocql.Consistency
	hasSerial      bool
	batch, errored bool
}

func (o *queryObserver) ObserveQuery(_ context.Context, q gocql.ObservedQuery) {
	serial, ok := q.Query.GetSerialConsistency()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, observed{stmt: q.Statement, cons: q.Query.GetConsistency(), serial: serial, hasSerial: ok, errored: q.Err != nil})
}

func (o *queryObserver) ObserveBatch(_ context.Context, b gocql.ObservedBatch) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, stmt := range b.Statements {
		o.seen = append(o.seen, observed{stmt: stmt, cons: b.Batch.GetConsistency(), batch: true, errored: b.Err != nil})
	}
}

func (o *queryObserver) reset() []observed {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.seen
	o.seen = nil
	return s
}

// TestConsistencyReachesQueries runs every operation and checks, through
// the driver's query observer, the consistency level each statement was
// sent with: reads at read_consistency, writes at write_consistency, the
// redeeming transactions at serial_consistency with their commit level.
func TestConsistencyReachesQueries(t *testing.T) {
	testHosts(t)
	for _, tc := range []struct{ read, write, serial, commit string }{
		{"", "", "", "ONE"}, // defaults: ONE, ANY, SERIAL; commit ONE in place of ANY
		{"QUORUM", "ALL", "LOCAL_SERIAL", "ALL"},
		{"LOCAL_ONE", "ANY", "LOCAL_SERIAL", "LOCAL_ONE"},
		{"LOCAL_QUORUM", "LOCAL_QUORUM", "SERIAL", "LOCAL_QUORUM"},
	} {
		t.Run(tc.read+"/"+tc.write+"/"+tc.serial, func(t *testing.T) {
			cons, err := ParseConsistencies(tc.read, tc.write, tc.serial)
			if err != nil {
				t.Fatal(err)
			}
			obs := new(queryObserver)
			e := newTestEngine(t, cons, obs)
			ctx := testCtx(t, 30*time.Second)
			obs.reset() // Start's schema statements

			now := time.Now()
			code := &stores.Code{Key: storetest.Key(), ClientID: "c", Family: "f", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
			fam := "fam-" + storetest.Key()[:16]
			at := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, ClientID: "c", Family: fam, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
			rt := &stores.Token{Key: storetest.Key(), Kind: stores.RefreshToken, ClientID: "c", Family: fam, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
			steps := []func() error{
				func() error { return e.InsertCode(ctx, code) },
				func() error { _, err := e.ConsumeCode(ctx, code.Key); return err },
				func() error { return e.InsertTokens(ctx, at, rt) },
				func() error { _, err := e.LookupToken(ctx, stores.RefreshToken, rt.Key); return err },
				func() error { _, err := e.ConsumeRefreshToken(ctx, rt.Key); return err },
				func() error { return e.RevokeToken(ctx, stores.AccessToken, at.Key) },
				func() error { return e.RevokeFamily(ctx, fam, time.Now().Add(time.Hour)) },
			}
			for i, step := range steps {
				if err := step(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			seen := obs.reset()
			kinds := map[string]int{}
			for _, o := range seen {
				var want gocql.Consistency
				switch {
				case strings.Contains(o.stmt, " IF "):
					kinds["cas"]++
					want = gocql.ParseConsistency(tc.commit)
					if !o.hasSerial || o.serial != cons.Serial {
						t.Errorf("%q: serial consistency %v (set %v), want %v", o.stmt, o.serial, o.hasSerial, cons.Serial)
					}
				case strings.HasPrefix(o.stmt, "SELECT"):
					kinds["read"]++
					want = cons.Read
				default:
					kinds["write"]++
					want = cons.Write
				}
				if o.cons != want {
					t.Errorf("%q sent at %v, want %v", o.stmt, o.cons, want)
				}
				if o.errored {
					t.Errorf("%q failed", o.stmt)
				}
			}
			if kinds["cas"] != 2 || kinds["read"] < 4 || kinds["write"] < 5 {
				t.Fatalf("observed %v (%d statements); want 2 transactions, reads and writes", kinds, len(seen))
			}
		})
	}
}

// TestStartChecksSchema: a missing keyspace or missing tables fail Start
// with a message saying what to do.
func TestStartChecksSchema(t *testing.T) {
	hosts := testHosts(t)
	ctx := testCtx(t, 60*time.Second)
	e, _ := NewEngine(Config{Hosts: hosts, Keyspace: "oauth2_test_absent", Consistency: defaults(t)})
	defer e.Close()
	_, err := e.Start(ctx)
	if !errors.Is(err, stores.ErrUnavailable) || !strings.Contains(err.Error(), `keyspace "oauth2_test_absent" does not exist`) {
		t.Fatalf("Start on a missing keyspace: %v", err)
	}
	createKeyspace(t, hosts, "oauth2_test_empty", 1)
	e2, _ := NewEngine(Config{Hosts: hosts, Keyspace: "oauth2_test_empty", Consistency: defaults(t)})
	defer e2.Close()
	_, err = e2.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "lacks tables codes, tokens, tokens_by_family, consumed") {
		t.Fatalf("Start on a keyspace without tables: %v", err)
	}
}

// TestUnreachable: with nothing listening, every operation fails with
// ErrUnavailable within the timeout, and later calls fail at once.
func TestUnreachable(t *testing.T) {
	e, err := NewEngine(Config{Hosts: []string{"127.0.0.1:1"}, Keyspace: "oauth", Consistency: defaults(t), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	start := time.Now()
	_, err = e.LookupToken(testCtx(t, 10*time.Second), stores.AccessToken, storetest.Key())
	if !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("LookupToken: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v to fail with a 1s timeout", d)
	}
	t.Logf("failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	start = time.Now()
	for _, op := range []func(context.Context) error{
		func(ctx context.Context) error { _, err := e.ConsumeCode(ctx, storetest.Key()); return err },
		func(ctx context.Context) error { return e.RevokeFamily(ctx, "f", time.Now().Add(time.Hour)) },
		func(ctx context.Context) error { _, err := e.Start(ctx); return err },
	} {
		if err := op(testCtx(t, 10*time.Second)); !errors.Is(err, stores.ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("three more calls took %v", d)
	}
	// The caller's context bounds the wait too.
	time.Sleep(retryConnectAfter)
	start = time.Now()
	_, err = e.LookupToken(testCtx(t, 100*time.Millisecond), stores.AccessToken, storetest.Key())
	if !errors.Is(err, stores.ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("with a 100ms context: %v after %v", err, time.Since(start))
	}
}

// TestUnresponsive: a node that accepts connections but never answers
// fails operations with ErrUnavailable, bounded by the timeout.
func TestUnresponsive(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	e, _ := NewEngine(Config{Hosts: []string{l.Addr().String()}, Keyspace: "oauth", Consistency: defaults(t), Timeout: time.Second})
	defer e.Close()
	start := time.Now()
	_, err = e.LookupToken(testCtx(t, 30*time.Second), stores.AccessToken, storetest.Key())
	if !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("LookupToken: %v, want ErrUnavailable", err)
	}
	t.Logf("failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v to fail with a 1s timeout", d)
	}
}

// TestRecoversAfterFailedConnect: a store that could not connect at first
// connects on a later call, without a restart.
func TestRecoversAfterFailedConnect(t *testing.T) {
	hosts := testHosts(t)
	createKeyspace(t, hosts, testKeyspace, 1)
	newTestEngine(t, defaults(t), nil) // tables
	// Reserve a port, then close it: nothing listens there yet.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	e, _ := NewEngine(Config{Hosts: []string{addr}, Keyspace: testKeyspace, Consistency: defaults(t), Timeout: 2 * time.Second})
	defer e.Close()
	if _, err := e.LookupToken(testCtx(t, 10*time.Second), stores.AccessToken, storetest.Key()); !errors.Is(err, stores.ErrUnavailable) {
		t.Fatalf("before the proxy: %v, want ErrUnavailable", err)
	}
	// Now a proxy to the real node appears on that port.
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	defer l.Close()
	go proxy(l, hosts[0])
	time.Sleep(retryConnectAfter)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := e.LookupToken(testCtx(t, 10*time.Second), stores.AccessToken, storetest.Key())
		if errors.Is(err, stores.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func proxy(l net.Listener, to string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", to)
			if err != nil {
				return
			}
			defer u.Close()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			_, _ = io.Copy(c, u)
		}()
	}
}

// TestSchemaFile: create_schema runs one CREATE TABLE per table of
// sql/cassandra/oauth-server.cql, then the subject and client_id indexes,
// all in the configured keyspace; on Cassandra 4 the indexes are classic
// secondary indexes.
func TestSchemaFile(t *testing.T) {
	stmts := schemaStatements("ks1")
	// The revocation feed's table is optional: StartFeed checks it.
	for _, table := range append(append([]string(nil), schemaTables...), "revocations") {
		found := false
		for _, st := range stmts {
			found = found || strings.HasPrefix(st, "CREATE TABLE IF NOT EXISTS ks1."+table+" (")
		}
		if !found {
			t.Errorf("no CREATE TABLE for %s in keyspace ks1 among %q", table, stmts)
		}
	}
	for i, st := range stmts {
		if !strings.HasPrefix(st, "CREATE TABLE IF NOT EXISTS ks1.") && !strings.Contains(st, " ON ks1.") {
			t.Errorf("statement %d is not in keyspace ks1: %q", i, st)
		}
	}
	// The subject and client_id indexes and the registration token's:
	// storage-attached on Cassandra 5, classic on 4.
	var indexes []string
	for _, st := range stmts {
		if strings.HasPrefix(st, "CREATE INDEX") {
			indexes = append(indexes, st)
		}
	}
	if len(indexes) != 5 {
		t.Fatalf("%d index statements, want 5: %q", len(indexes), indexes)
	}
	for i, st := range legacyIndexes(indexes) {
		if !strings.HasSuffix(indexes[i], " USING 'sai'") || strings.Contains(st, "USING") {
			t.Errorf("index statement %q, classic form %q", indexes[i], st)
		}
	}
}

func TestTTL(t *testing.T) {
	if _, ok := ttl(time.Now().Add(-time.Millisecond)); ok {
		t.Fatal("expired record got a TTL")
	}
	if _, ok := ttl(time.Time{}); ok {
		t.Fatal("zero expiry got a TTL")
	}
	if s, ok := ttl(time.Now().Add(1200 * time.Millisecond)); !ok || s != 2 {
		t.Fatalf("1.2s left: TTL %d, want 2 (rounded up)", s)
	}
	if s, _ := ttl(time.Now().Add(100 * 365 * 24 * time.Hour)); s != maxTTL {
		t.Fatalf("TTL %d, want the 20-year cap", s)
	}
}

// TestSchemaUpgrade takes a keyspace without version 4's audience columns
// and version 5's jkt and oidc columns and single_use table forward:
// without create_schema Start names the ALTER statements and the missing
// table, with it Start runs them and the new fields round-trip.
func TestSchemaUpgrade(t *testing.T) {
	e := newTestEngine(t, defaults(t), nil)
	ctx := testCtx(t, 2*time.Minute)
	s, err := e.sess(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"codes", "tokens"} {
		if err := execDDL(ctx, s, "ALTER TABLE "+testKeyspace+"."+table+" DROP (audience, jkt, oidc)"); err != nil {
			t.Fatalf("dropping %s.audience, jkt and oidc: %v", table, err)
		}
	}
	plain, err := NewEngine(Config{Hosts: testHosts(t), Keyspace: testKeyspace, Consistency: defaults(t), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plain.Close)
	_, err = plain.Start(ctx)
	for _, want := range []string{"schema version 5", "ALTER TABLE " + testKeyspace + ".codes ADD audience text", "ALTER TABLE " + testKeyspace + ".tokens ADD audience text",
		"ALTER TABLE " + testKeyspace + ".codes ADD jkt text", "ALTER TABLE " + testKeyspace + ".tokens ADD oidc text"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Start on a keyspace without audiences: %v; want %q", err, want)
		}
	}
	up := newTestEngine(t, defaults(t), nil)
	now := time.Now().Truncate(time.Millisecond)
	tok := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, ClientID: "c", Audience: []string{"https://api.example/", "urn:x"}, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
	if err := up.InsertTokens(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got, err := up.LookupToken(ctx, stores.AccessToken, tok.Key); err != nil || len(got.Audience) != 2 {
		t.Fatalf("audience after the upgrade: %+v, %v", got, err)
	}
	if _, err := plain.Start(ctx); err != nil {
		t.Fatalf("Start after the upgrade: %v", err)
	}
	bound := &stores.Token{Key: storetest.Key(), Kind: stores.RefreshToken, ClientID: "c", JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
		OIDC: &stores.OIDCGrant{SessionID: "sid", Claims: map[string]any{"email": "a@example.com"}}, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
	if err := up.InsertTokens(ctx, bound); err != nil {
		t.Fatal(err)
	}
	if got, err := up.ConsumeRefreshToken(ctx, bound.Key); err != nil || got.JKT != bound.JKT || got.OIDC == nil || got.OIDC.Claims["email"] != "a@example.com" {
		t.Fatalf("a bound token after the upgrade: %+v, %v", got, err)
	}

	// A keyspace of version 4 lacks the single_use table.
	if err := execDDL(ctx, s, "DROP TABLE "+testKeyspace+".single_use"); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Start(ctx); err == nil || !strings.Contains(err.Error(), "lacks tables single_use") {
		t.Fatalf("Start on a keyspace without single_use: %v", err)
	}
	up = newTestEngine(t, defaults(t), nil)
	if err := up.PutOnce(ctx, "par:x", []byte("req"), time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("PutOnce after the upgrade: %v", err)
	}
	if v, err := up.TakeOnce(ctx, "par:x"); err != nil || string(v) != "req" {
		t.Fatalf("TakeOnce after the upgrade: %q, %v", v, err)
	}
}
