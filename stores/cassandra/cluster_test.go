package cassandra

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

// TestReplicaOutage runs every operation at several consistency levels on a
// keyspace with three replicas, and prints which succeed. It needs a
// three-node cluster (see scripts/cassandra.sh for CASSANDRA_ADDRESS):
//
//	OAUTH2_TEST_CASSANDRA_CLUSTER_HOSTS=127.0.0.2,127.0.0.3,127.0.0.4
//	OAUTH2_TEST_CASSANDRA_NODES_DOWN=1   # after stopping one node
//
// With no node down everything must succeed; with one down, everything but
// ALL must; with two down, only ONE/ANY reads and writes (no transaction:
// Paxos needs a quorum).
func TestReplicaOutage(t *testing.T) {
	v := os.Getenv("OAUTH2_TEST_CASSANDRA_CLUSTER_HOSTS")
	if v == "" {
		t.Skip("OAUTH2_TEST_CASSANDRA_CLUSTER_HOSTS is not set (a three-node cluster)")
	}
	hosts := strings.Split(v, ",")
	down, _ := strconv.Atoi(os.Getenv("OAUTH2_TEST_CASSANDRA_NODES_DOWN"))
	const ks = "oauth2_test_rf3"
	createKeyspace(t, hosts, ks, 3)
	probe, _ := NewEngine(Config{Hosts: hosts, Keyspace: ks, Consistency: defaults(t)})
	defer probe.Close()
	s, err := probe.sess(testCtx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Query("SELECT peer FROM system.peers").Iter().NumRows(); n != 2 {
		t.Fatalf("the node sees %d peers, want 2: not a three-node cluster", n)
	}

	ops := []string{"InsertCode", "ConsumeCode", "InsertTokens", "LookupToken", "ConsumeRefresh", "RevokeToken", "RevokeFamily"}
	var table strings.Builder
	fmt.Fprintf(&table, "\n| read/write/serial (commit) | %s |\n|---|%s\n", strings.Join(ops, " | "), strings.Repeat("---|", len(ops)))
	for _, tc := range []struct{ read, write string }{
		{"ONE", "ANY"}, {"ONE", "ONE"}, {"QUORUM", "QUORUM"}, {"ALL", "ALL"},
	} {
		cons, err := ParseConsistencies(tc.read, tc.write, "SERIAL")
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewEngine(Config{Hosts: hosts, Keyspace: ks, Consistency: cons, CreateSchema: true, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := e.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		now := time.Now()
		code := &stores.Code{Key: storetest.Key(), ClientID: "c", Family: "f", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
		fam := "fam-" + storetest.Key()[:16]
		at := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, ClientID: "c", Family: fam, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
		rt := &stores.Token{Key: storetest.Key(), Kind: stores.RefreshToken, ClientID: "c", Family: fam, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
		steps := []func(context.Context) error{
			func(ctx context.Context) error { return e.InsertCode(ctx, code) },
			func(ctx context.Context) error { _, err := e.ConsumeCode(ctx, code.Key); return err },
			func(ctx context.Context) error { return e.InsertTokens(ctx, at, rt) },
			func(ctx context.Context) error { _, err := e.LookupToken(ctx, stores.AccessToken, at.Key); return err },
			func(ctx context.Context) error { _, err := e.ConsumeRefreshToken(ctx, rt.Key); return err },
			func(ctx context.Context) error { return e.RevokeToken(ctx, stores.AccessToken, at.Key) },
			func(ctx context.Context) error { return e.RevokeFamily(ctx, fam, time.Now().Add(time.Hour)) },
		}
		name := fmt.Sprintf("%s/%s/SERIAL (%s)", tc.read, tc.write, cons.Commit())
		fmt.Fprintf(&table, "| %s |", name)
		for i, step := range steps {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			start := time.Now()
			err := step(ctx)
			cancel()
			cell := "ok"
			if err != nil {
				cell = "fail"
				t.Logf("%s %s after %v: %v", name, ops[i], time.Since(start).Round(time.Millisecond), err)
			}
			fmt.Fprintf(&table, " %s |", cell)
			want := true
			switch {
			case down >= 2:
				// Paxos needs 2 of 3; ONE/ANY plain reads and writes work.
				want = (tc.read == "ONE" && ops[i] != "ConsumeCode" && ops[i] != "ConsumeRefresh")
			case down == 1:
				want = tc.read != "ALL"
			}
			if (err == nil) != want {
				t.Errorf("%s %s with %d node(s) down: error %v, want success %v", name, ops[i], down, err, want)
			}
		}
		table.WriteString("\n")
	}
	t.Logf("%d of 3 nodes down:%s", down, table.String())
}
