package oauth2

// Restart tests: a real Caddy process (this test binary, re-executed as
// `caddy run`) issues a token into a persistent store, is stopped and started
// again, and the token still passes the guard; then the store's content is
// dumped and must not contain the token.

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// childEnv marks the re-executed test binary that runs Caddy instead of tests.
const childEnv = "OAUTH2_TEST_CADDY_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		caddycmd.Main()
		return
	}
	os.Exit(m.Run())
}

// caddyProcess is one Caddy process running a Caddyfile.
type caddyProcess struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{} // closed when the process has exited
}

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startCaddyProcess(t *testing.T, caddyfilePath string, ports ...int) *caddyProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "run", "--config", caddyfilePath, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), childEnv+"=1", "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	p := &caddyProcess{cmd: cmd, log: new(syncBuffer), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for _, port := range ports {
		for {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.done:
				t.Fatalf("caddy exited before listening on %d:\n%s", port, p.log)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("caddy did not listen on %d:\n%s", port, p.log)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return p
}

// stop ends the process gracefully and waits for it.
func (p *caddyProcess) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("caddy did not stop on SIGTERM:\n%s", p.log)
	}
}

// restartConfig is a Caddyfile for the restart tests with the given store
// block used for both tokens and codes.
func restartConfig(store string) string {
	return fmt.Sprintf(`{
	admin off
	default_bind 127.0.0.1
	http_port 19080
	https_port 19443
	grace_period 1s
	persist_config off
	oauth2 {
		token_secret "restart-test-secret-of-at-least-32-bytes"
		purge_every 1s
		access_token_store %[1]s
		authorization_code_store %[1]s
		client svc {
			secret_hash %[2]s
			grant_types client_credentials
			scopes read
		}
	}
}
http://127.0.0.1:19080 {
	oauth2_server
}
http://127.0.0.1:19081 {
	oauth2_guard read
	respond "ok {http.auth.user.id}"
}
`, store, secretHash)
}

// runRestart issues a token, restarts Caddy, and checks the token still
// passes the guard and can be revoked. It returns the raw token so the
// caller can look for it in the store.
func runRestart(t *testing.T, store string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(restartConfig(store)), 0o600); err != nil {
		t.Fatal(err)
	}
	cc := &clientcredentials.Config{
		ClientID: "svc", ClientSecret: "s3cret", TokenURL: "http://127.0.0.1:19080/oauth2/token",
		Scopes: []string{"read"}, AuthStyle: oauth2.AuthStyleInHeader,
	}
	guard := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:19081/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	first := startCaddyProcess(t, path, 19080, 19081)
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("client_credentials: %v\n%s", err, first.log)
	}
	if code := guard(tok.AccessToken); code != 200 {
		t.Fatalf("guard before restart: %d\n%s", code, first.log)
	}
	first.stop(t)
	http.DefaultClient.CloseIdleConnections()

	second := startCaddyProcess(t, path, 19080, 19081)
	if code := guard(tok.AccessToken); code != 200 {
		t.Fatalf("guard after restart: %d, want 200\n%s", code, second.log)
	}
	// Revocation after the restart takes effect.
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:19080/oauth2/revoke",
		strings.NewReader(url.Values{"token": {tok.AccessToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if code := guard(tok.AccessToken); code != 401 {
		t.Fatalf("guard after revocation: %d, want 401", code)
	}
	// A second token stays in the store for the dump check.
	live, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if code := guard(live.AccessToken); code != 200 {
		t.Fatalf("guard of a second token: %d", code)
	}
	for _, l := range strings.Split(first.log.String()+second.log.String(), "\n") {
		for _, raw := range []string{tok.AccessToken, live.AccessToken} {
			if strings.Contains(l, raw[4:]) {
				t.Fatalf("a token appears in Caddy's log: %s", l)
			}
		}
	}
	second.stop(t)
	return live.AccessToken
}

// assertAbsent fails if the raw token, or its random part, is in dump.
func assertAbsent(t *testing.T, dump []byte, raw string) {
	t.Helper()
	if len(dump) == 0 {
		t.Fatal("the store dump is empty: the check would prove nothing")
	}
	if bytes.Contains(dump, []byte(raw[4:])) {
		t.Fatal("the raw token is in the store")
	}
}

func TestRestartSQLite(t *testing.T) {
	db := filepath.Join(t.TempDir(), "oauth2.db")
	raw := runRestart(t, fmt.Sprintf(`sql {
		dialect sqlite
		dsn %q
		create_schema
	}`, db))
	var dump []byte
	for _, f := range []string{db, db + "-wal"} {
		b, _ := os.ReadFile(f)
		dump = append(dump, b...)
	}
	assertAbsent(t, dump, raw)
}

func TestRestartMariaDB(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_MYSQL_DSN")
	if dsn == "" {
		t.Skip("set OAUTH2_TEST_MYSQL_DSN to run against MariaDB (scripts/services.sh env prints it)")
	}
	raw := runRestart(t, fmt.Sprintf(`sql {
		dialect mysql
		dsn %q
		table_prefix restart_
		create_schema
	}`, dsn))
	assertAbsent(t, dumpSQL(t, "mysql", dsn, "restart_"), raw)
}

func TestRestartPostgres(t *testing.T) {
	dsn := os.Getenv("OAUTH2_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set OAUTH2_TEST_POSTGRES_DSN to run against PostgreSQL (scripts/services.sh env prints it)")
	}
	raw := runRestart(t, fmt.Sprintf(`sql {
		dialect postgres
		dsn %q
		table_prefix restart_
		create_schema
	}`, dsn))
	assertAbsent(t, dumpSQL(t, "pgx", dsn, "restart_"), raw)
}

// dumpSQL returns every row of every table whose name starts with prefix,
// as text.
func dumpSQL(t *testing.T, driver, dsn, prefix string) []byte {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tables := prefixedTables(t, db, driver, prefix)
	if len(tables) == 0 {
		t.Fatalf("no %s* tables to dump", prefix)
	}
	var dump bytes.Buffer
	for _, table := range tables {
		rows, err := db.Query("SELECT * FROM " + table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					dump.Write(b)
				} else {
					fmt.Fprint(&dump, v)
				}
				dump.WriteByte('|')
			}
			dump.WriteByte('\n')
		}
		rows.Close()
	}
	return dump.Bytes()
}

func TestRestartCassandra(t *testing.T) {
	hostList := os.Getenv("OAUTH2_TEST_CASSANDRA_HOSTS")
	if hostList == "" {
		t.Skip("set OAUTH2_TEST_CASSANDRA_HOSTS to run against Cassandra (scripts/cassandra.sh env prints it)")
	}
	hosts := strings.Split(hostList, ",")
	const keyspace = "oauth2_restart"
	cluster := gocql.NewCluster(hosts...)
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
	raw := runRestart(t, fmt.Sprintf(`cassandra {
		hosts %s
		keyspace %s
		create_schema
	}`, strings.Join(hosts, " "), keyspace))

	// Dump every table of the keyspace as JSON rows.
	var tables []string
	iter := session.Query("SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?", keyspace).Iter()
	var name string
	for iter.Scan(&name) {
		tables = append(tables, name)
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	var dump bytes.Buffer
	for _, table := range tables {
		iter := session.Query("SELECT JSON * FROM " + keyspace + "." + table).Iter()
		var row string
		for iter.Scan(&row) {
			dump.WriteString(row + "\n")
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
	}
	assertAbsent(t, dump.Bytes(), raw)
}
