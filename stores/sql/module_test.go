package sql

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        Store
		err         string
	}{
		{
			name: "full",
			input: `sql {
				dialect mysql
				dsn "{env.OAUTH2_DSN}"
				table_prefix gw_
				max_open_conns 20
				max_idle_conns 5
				conn_max_lifetime 10m
				create_schema
				purge_batch 500
				lock_timeout 3s
				purge_lease 30s
			}`,
			want: Store{Dialect: "mysql", DSN: "{env.OAUTH2_DSN}", TablePrefix: "gw_", MaxOpenConns: 20, MaxIdleConns: 5,
				ConnMaxLifetime: caddy.Duration(10 * time.Minute), CreateSchema: true, PurgeBatch: 500,
				LockTimeout: caddy.Duration(3 * time.Second), PurgeLease: caddy.Duration(30 * time.Second)},
		},
		{name: "minimal", input: "sql {\n dialect sqlite\n dsn /var/lib/caddy/oauth2.db\n}",
			want: Store{Dialect: "sqlite", DSN: "/var/lib/caddy/oauth2.db"}},
		{name: "db2 parses without the driver", input: "sql {\n dialect db2\n dsn \"HOSTNAME=h;PORT=50000\"\n}",
			want: Store{Dialect: "db2", DSN: "HOSTNAME=h;PORT=50000"}},
		{name: "no block", input: "sql", err: "dialect is required"},
		{name: "no dsn", input: "sql {\n dialect postgres\n}", err: "dsn is required"},
		{name: "inline argument", input: "sql mysql {\n dsn x\n}", err: "wrong argument count"},
		{name: "unknown dialect", input: "sql {\n dialect mongo\n dsn x\n}", err: `unknown dialect "mongo"`},
		{name: "unknown option", input: "sql {\n dialect mysql\n dsn x\n pool 3\n}", err: `unrecognized subdirective "pool"`},
		{name: "duplicate", input: "sql {\n dialect mysql\n dialect postgres\n dsn x\n}", err: `duplicate subdirective "dialect"`},
		{name: "dsn without value", input: "sql {\n dialect mysql\n dsn\n}", err: "wrong argument count"},
		{name: "two dsns", input: "sql {\n dialect mysql\n dsn a b\n}", err: "wrong argument count"},
		{name: "bad prefix", input: "sql {\n dialect mysql\n dsn x\n table_prefix oauth-\n}", err: "table_prefix"},
		{name: "zero conns", input: "sql {\n dialect mysql\n dsn x\n max_open_conns 0\n}", err: "positive integer"},
		{name: "word conns", input: "sql {\n dialect mysql\n dsn x\n max_idle_conns many\n}", err: "positive integer"},
		{name: "negative batch", input: "sql {\n dialect mysql\n dsn x\n purge_batch -1\n}", err: "positive integer"},
		{name: "bad lifetime", input: "sql {\n dialect mysql\n dsn x\n conn_max_lifetime soon\n}", err: "positive duration"},
		{name: "bad lease", input: "sql {\n dialect mysql\n dsn x\n purge_lease 0s\n}", err: "purge_lease: want a positive duration"},
		{name: "zero lock timeout", input: "sql {\n dialect db2\n dsn x\n lock_timeout 0s\n}", err: "lock_timeout: want a positive duration"},
		{name: "create_schema with value", input: "sql {\n dialect mysql\n dsn x\n create_schema yes\n}", err: "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Store
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestJSONConfig checks the JSON field names a Caddyfile adapts to.
func TestJSONConfig(t *testing.T) {
	s := Store{Dialect: "postgres", DSN: "d", TablePrefix: "p_", MaxOpenConns: 1, MaxIdleConns: 2,
		ConnMaxLifetime: caddy.Duration(time.Second), CreateSchema: true, PurgeBatch: 3, LockTimeout: caddy.Duration(time.Second)}
	b, _ := json.Marshal(s)
	want := `{"dialect":"postgres","dsn":"d","table_prefix":"p_","max_open_conns":1,"max_idle_conns":2,"conn_max_lifetime":1000000000,"create_schema":true,"purge_batch":3,"lock_timeout":1000000000}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func provision(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

// TestModulePoolSharing checks that stores on one DSN share one handle,
// that Provision does not connect, and that the last Cleanup closes it.
func TestModulePoolSharing(t *testing.T) {
	dsn := sqliteDSN(t)
	t.Setenv("OAUTH2_TEST_SQLITE_PATH", dsn)
	a := &Store{Dialect: "sqlite", DSN: "{env.OAUTH2_TEST_SQLITE_PATH}", CreateSchema: true}
	b := &Store{Dialect: "sqlite", DSN: dsn, TablePrefix: "other_", CreateSchema: true}
	provision(t, a)
	provision(t, b)
	if a.Engine.DB() != b.Engine.DB() {
		t.Fatal("two stores on one DSN got two pools")
	}
	c := &Store{Dialect: "sqlite", DSN: dsn, LockTimeout: caddy.Duration(5 * time.Second)}
	provision(t, c)
	if c.Engine.DB() != a.Engine.DB() {
		t.Fatal("lock_timeout, which sqlite ignores, split the pool")
	}
	if err := c.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if a.MaxOpenConns != defaultMaxOpenConns || a.MaxIdleConns != defaultMaxOpenConns || a.TablePrefix != "oauth_" {
		t.Fatalf("defaults not applied: %+v", a)
	}
	ctx := testCtx(t, time.Minute)
	for _, s := range []*Store{a, b} {
		if err := s.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
	}
	tok := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, ClientID: "c", Family: "f",
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := a.InsertTokens(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := b.LookupToken(ctx, stores.AccessToken, tok.Key); err == nil {
		t.Fatal("stores with different prefixes share tables")
	}
	if _, err := a.LookupToken(ctx, stores.AccessToken, tok.Key); err != nil {
		t.Fatal(err)
	}

	db := a.Engine.DB()
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("pool closed while b still uses it: %v", err)
	}
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(ctx); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("pool still open after the last Cleanup: %v", err)
	}
	if err := b.Cleanup(); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
}

// TestProvisionDoesNotConnect provisions stores whose servers are absent.
func TestProvisionDoesNotConnect(t *testing.T) {
	for _, d := range []string{"mysql", "postgres", "sqlserver", "oracle"} {
		s := &Store{Dialect: d, DSN: map[string]string{
			"mysql": "u:p@tcp(127.0.0.1:1)/db", "postgres": "postgres://u:p@127.0.0.1:1/db",
			"sqlserver": "sqlserver://u:p@127.0.0.1:1", "oracle": "oracle://u:p@127.0.0.1:1/svc",
		}[d]}
		provision(t, s)
		err := s.Start(testCtx(t, 2*time.Second))
		if err == nil || !strings.Contains(err.Error(), "store unavailable") {
			t.Errorf("%s Start against a closed port: %v", d, err)
		}
		if err := s.Cleanup(); err != nil {
			t.Error(err)
		}
	}
}

func TestProvisionErrors(t *testing.T) {
	for _, tc := range []struct {
		s   Store
		err string
	}{
		{Store{DSN: "x"}, "dialect is required"},
		{Store{Dialect: "mysql"}, "dsn is required"},
		{Store{Dialect: "mysql", DSN: "{env.OAUTH2_TEST_UNSET_VARIABLE}"}, "empty after replacing"},
		{Store{Dialect: "mysql", DSN: "not a dsn"}, "invalid DSN"},
		{Store{Dialect: "sqlite", DSN: "x", TablePrefix: "1bad"}, "table_prefix"},
		{Store{Dialect: "sqlite", DSN: "x", PurgeBatch: -1}, "negative"},
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := tc.s.Provision(ctx)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: got %v, want %q", tc.s, err, tc.err)
		}
		_ = tc.s.Cleanup()
		cancel()
	}
}
