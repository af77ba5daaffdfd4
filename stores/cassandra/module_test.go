package cassandra

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        string // JSON of the store, if no error
		err         string // substring of the error
	}{
		{
			name:  "full",
			input: "cassandra {\n hosts 10.0.0.1:9042 10.0.0.2\n keyspace oauth\n read_consistency local_quorum\n write_consistency LOCAL_QUORUM\n serial_consistency LOCAL_SERIAL\n local_dc dc1\n username app\n password {env.CASS_PW}\n timeout 2s\n create_schema\n}",
			want:  `{"hosts":["10.0.0.1:9042","10.0.0.2"],"keyspace":"oauth","read_consistency":"LOCAL_QUORUM","write_consistency":"LOCAL_QUORUM","serial_consistency":"LOCAL_SERIAL","local_dc":"dc1","username":"app","password":"{env.CASS_PW}","timeout":2000000000,"create_schema":true}`,
		},
		{name: "minimal", input: "cassandra {\n hosts 127.0.0.1\n}", want: `{"hosts":["127.0.0.1"]}`},
		{name: "no block", input: "cassandra", want: `{}`},
		{name: "inline argument", input: "cassandra 127.0.0.1", err: "wrong argument count"},
		{name: "unknown subdirective", input: "cassandra {\n replicas 3\n}", err: `unrecognized subdirective "replicas"`},
		{name: "duplicate", input: "cassandra {\n keyspace a\n keyspace b\n}", err: `duplicate subdirective "keyspace"`},
		{name: "hosts without argument", input: "cassandra {\n hosts\n}", err: "wrong argument count"},
		{name: "keyspace two arguments", input: "cassandra {\n keyspace a b\n}", err: "wrong argument count"},
		{name: "keyspace no argument", input: "cassandra {\n keyspace\n}", err: "wrong argument count"},
		{name: "unknown consistency", input: "cassandra {\n read_consistency MOST\n}", err: `read_consistency: unknown consistency level "MOST"`},
		{name: "bad timeout", input: "cassandra {\n timeout soon\n}", err: `timeout must be a positive duration: "soon"`},
		{name: "zero timeout", input: "cassandra {\n timeout 0s\n}", err: "timeout must be a positive duration"},
		{name: "create_schema with argument", input: "cassandra {\n create_schema yes\n}", err: "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Store
			err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(&s)
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	hosts := []string{"127.0.0.1"}
	for _, tc := range []struct {
		name string
		s    Store
		err  string
	}{
		{name: "defaults", s: Store{Hosts: hosts}},
		{name: "production", s: Store{Hosts: hosts, ReadConsistency: "LOCAL_QUORUM", WriteConsistency: "LOCAL_QUORUM", SerialConsistency: "LOCAL_SERIAL"}},
		{name: "serial read", s: Store{Hosts: hosts, ReadConsistency: "SERIAL"}},
		{name: "placeholder keyspace", s: Store{Hosts: hosts, Keyspace: "{env.KS}"}},
		{name: "no hosts", s: Store{}, err: "hosts is required"},
		{name: "ANY read", s: Store{Hosts: hosts, ReadConsistency: "ANY"}, err: "read_consistency: ANY is only valid for writes"},
		{name: "any read lower case", s: Store{Hosts: hosts, ReadConsistency: "any"}, err: "read_consistency: ANY is only valid for writes"},
		{name: "unknown read", s: Store{Hosts: hosts, ReadConsistency: "SOME"}, err: `read_consistency: unknown consistency level "SOME"`},
		{name: "unknown write", s: Store{Hosts: hosts, WriteConsistency: "QUORUMS"}, err: `write_consistency: unknown consistency level "QUORUMS"`},
		{name: "serial write", s: Store{Hosts: hosts, WriteConsistency: "SERIAL"}, err: "write_consistency: SERIAL is only valid"},
		{name: "non-serial serial", s: Store{Hosts: hosts, SerialConsistency: "QUORUM"}, err: "serial_consistency: QUORUM is not a serial level"},
		{name: "bad keyspace", s: Store{Hosts: hosts, Keyspace: "o-auth"}, err: `keyspace "o-auth"`},
		{name: "keyspace starting with a digit", s: Store{Hosts: hosts, Keyspace: "1oauth"}, err: `keyspace "1oauth"`},
		{name: "negative timeout", s: Store{Hosts: hosts, Timeout: -1}, err: "timeout must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestCommitConsistency(t *testing.T) {
	for _, tc := range []struct{ write, serial, want string }{
		{"ANY", "SERIAL", "ONE"},
		{"ANY", "LOCAL_SERIAL", "LOCAL_ONE"},
		{"ONE", "SERIAL", "ONE"},
		{"QUORUM", "SERIAL", "QUORUM"},
		{"LOCAL_QUORUM", "LOCAL_SERIAL", "LOCAL_QUORUM"},
	} {
		c, err := ParseConsistencies("ONE", tc.write, tc.serial)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Commit().String(); got != tc.want {
			t.Errorf("write %s serial %s: commit %s, want %s", tc.write, tc.serial, got, tc.want)
		}
	}
}

func provision(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	t.Cleanup(func() { _ = s.Cleanup() })
}

// TestProvision: provisioning neither connects nor fails on an unreachable
// cluster, resolves placeholders, and stores configured alike share one
// engine (so a reload does not reconnect).
func TestProvision(t *testing.T) {
	t.Setenv("OAUTH2_TEST_CASS_PW", "s3cret")
	t.Setenv("OAUTH2_TEST_CASS_HOSTS", "127.0.0.1:1, 127.0.0.2:1")
	start := time.Now()
	a := &Store{Hosts: []string{"{env.OAUTH2_TEST_CASS_HOSTS}"}, Username: "app", Password: "{env.OAUTH2_TEST_CASS_PW}"}
	provision(t, a)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Provision took %v: did it connect?", d)
	}
	cfg := a.Engine.Config()
	if cfg.Password != "s3cret" || strings.Join(cfg.Hosts, " ") != "127.0.0.1:1 127.0.0.2:1" || cfg.Keyspace != DefaultKeyspace {
		t.Fatalf("resolved config: hosts %q keyspace %q password resolved: %v", cfg.Hosts, cfg.Keyspace, cfg.Password == "s3cret")
	}
	if strings.Contains(a.poolKey, "s3cret") {
		t.Fatal("pool key holds the password")
	}
	if a.Engine.session != nil || a.Engine.connecting != nil {
		t.Fatal("Provision started connecting")
	}

	// The next config (a reload) gets the same engine; another differs.
	b := &Store{Hosts: []string{"{env.OAUTH2_TEST_CASS_HOSTS}"}, Username: "app", Password: "{env.OAUTH2_TEST_CASS_PW}"}
	provision(t, b)
	if a.Engine != b.Engine {
		t.Fatal("stores configured alike got different engines")
	}
	c := &Store{Hosts: []string{"127.0.0.1:1", "127.0.0.2:1"}, Username: "app", Password: "other"}
	provision(t, c)
	if c.Engine == a.Engine {
		t.Fatal("stores with different passwords share an engine")
	}
	d := &Store{Hosts: []string{"127.0.0.1:1", "127.0.0.2:1"}, Username: "app", Password: "s3cret", ReadConsistency: "QUORUM"}
	provision(t, d)
	if d.Engine == a.Engine {
		t.Fatal("stores with different consistency share an engine")
	}

	// Bad settings fail Provision, without a pool entry.
	bad := &Store{Hosts: []string{"127.0.0.1"}, ReadConsistency: "ANY"}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := bad.Provision(ctx); err == nil || !strings.Contains(err.Error(), "ANY is only valid for writes") {
		t.Fatalf("Provision with ANY reads: %v", err)
	}
	if bad.poolKey != "" {
		t.Fatal("failed Provision kept a pool key")
	}
}

// TestStartWarns: weak consistency on a keyspace with several replicas is
// logged at Start; QUORUM is not.
func TestStartWarns(t *testing.T) {
	hosts := testHosts(t)
	// RF 3 on a single node: the keyspace says 3 replicas, ONE still works.
	createKeyspace(t, hosts, "oauth2_test_rf3", 3)
	for _, tc := range []struct {
		read, write string
		warn        bool
	}{
		{"", "", true},
		{"ONE", "ONE", true},
		{"QUORUM", "QUORUM", false},
		{"ONE", "ALL", false},
	} {
		s := &Store{Hosts: hosts, Keyspace: "oauth2_test_rf3", ReadConsistency: tc.read, WriteConsistency: tc.write, CreateSchema: true}
		provision(t, s)
		core, logs := observer.New(zap.InfoLevel)
		s.logger = zap.New(core)
		if err := s.Start(testCtx(t, 60*time.Second)); err != nil {
			t.Fatalf("Start: %v", err)
		}
		warned := logs.FilterMessageSnippet("QUORUM or LOCAL_QUORUM").Len() == 1
		if warned != tc.warn {
			t.Errorf("read %q write %q on RF 3: warned %v, want %v", tc.read, tc.write, warned, tc.warn)
		}
		if warned {
			f := logs.All()[0].ContextMap()
			if f["replicas"] != int64(3) {
				t.Errorf("warning fields %v", f)
			}
		}
	}
}

func TestNewEngineRejectsZeroConsistencies(t *testing.T) {
	// The zero Consistencies is ANY everywhere: reads and Paxos would fail.
	if _, err := NewEngine(Config{Hosts: []string{"127.0.0.1"}, Keyspace: "oauth"}); err == nil {
		t.Fatal("NewEngine accepted ANY reads and a non-serial serial level")
	}
}
