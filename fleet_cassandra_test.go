package oauth2

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// TestFleetCassandra runs three gateways on a three-node Cassandra cluster
// at replication factor 3 with QUORUM reads and writes, then stops one node
// and a second one, recording what each operation answers: with one node
// down everything must keep working; with two down nothing may answer a
// wrong 200, and what needs the store answers 503. It stops and restarts
// nodes through scripts/cassandra.sh, so the cluster must be the one that
// script started:
//
//	scripts/cassandra.sh cluster start && eval "$(scripts/cassandra.sh cluster env)"
func TestFleetCassandra(t *testing.T) {
	v := os.Getenv("OAUTH2_TEST_CASSANDRA_CLUSTER_HOSTS")
	if v == "" {
		t.Skip("set OAUTH2_TEST_CASSANDRA_CLUSTER_HOSTS to run three gateways on a three-node Cassandra (scripts/cassandra.sh cluster env prints it)")
	}
	hosts := strings.Split(v, ",")
	const keyspace = "oauth2_fleet"
	cluster := gocql.NewCluster(hosts...)
	cluster.Timeout = 30 * time.Second
	session, err := cluster.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	if n := session.Query("SELECT peer FROM system.peers").Iter().NumRows(); n != 2 {
		t.Fatalf("%s sees %d peers, want 2: not a three-node cluster", hosts[0], n)
	}
	if err := session.Query("CREATE KEYSPACE IF NOT EXISTS " + keyspace +
		" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}").Exec(); err != nil {
		t.Fatal(err)
	}
	session.Close()

	store := fmt.Sprintf(`cassandra {
		hosts %s
		keyspace %s
		read_consistency QUORUM
		write_consistency QUORUM
		create_schema
	}`, strings.Join(hosts, " "), keyspace)
	// Fifty concurrent Paxos rounds on one partition take several seconds
	// to settle; the default 2s store_timeout would answer the winner 503.
	f := startFleet(t, store, "store_timeout 10s")
	runFleetBasics(t, f)

	nodes := &clusterNodes{t: t, hosts: hosts}
	t.Cleanup(nodes.restartAll)
	var table strings.Builder
	table.WriteString("\n| nodes down | consistency | metadata | issue (client_credentials) | authorize | redeem | validate | refresh | revoke | revoked token | replayed code |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	var spare *fleetState
	for down := 0; down <= 2; down++ {
		if down > 0 {
			nodes.stop(4 - down) // node 3, then node 2; the seed stays
		}
		st := runOutageRow(t, f, down, spare)
		fmt.Fprintf(&table, "| %d | QUORUM/QUORUM | %s |\n", down, strings.Join(st.cells, " | "))
		if down < 2 {
			spare = st
		}
	}
	t.Logf("three gateways, RF 3, read/write QUORUM (redemption: SERIAL):%s", table.String())
}

// fleetState is what one row of the outage table issued, for the next
// row to use when it cannot issue.
type fleetState struct {
	token, code, refreshToken string
	revoked, redeemedCode     string
	cells                     []string
}

// runOutageRow runs every operation once with the given number of nodes
// down and checks the answers: all succeed with at most one node down;
// with two, none answers a wrong 200.
func runOutageRow(t *testing.T, f *fleet, down int, prev *fleetState) *fleetState {
	a, b, c := f.gws[0], f.gws[1], f.gws[2]
	st := &fleetState{}
	ok := down < 2
	cell := func(op string, status int, good bool) {
		res := fmt.Sprintf("%d", status)
		if good {
			res += " ok"
		}
		st.cells = append(st.cells, res)
		switch {
		case ok && !good:
			t.Errorf("%d node(s) down: %s answered %d, want success", down, op, status)
		case !ok && status != 503 && op != "metadata":
			t.Errorf("%d nodes down: %s answered %d, want 503", down, op, status)
		}
	}
	// metadata needs no store: it answers whatever the cluster does.
	resp, err := f.hc.Get(a.url("/.well-known/oauth-authorization-server"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st.cells = append(st.cells, fmt.Sprintf("%d", resp.StatusCode))
	if resp.StatusCode != 200 {
		t.Errorf("%d down: metadata answered %d", down, resp.StatusCode)
	}

	tok, status := f.clientToken(a)
	cell("issue", status, status == 200 && tok != "")
	code, status := f.code(a)
	cell("authorize", status, code != "")
	if code == "" && prev != nil {
		code = prev.code // issued while a quorum was up
	}
	status, at, rt := f.redeem(b, code)
	cell("redeem", status, status == 200 && at != "")
	if tok == "" && prev != nil {
		tok = prev.token
	}
	status = f.guard(c, tok)
	cell("validate", status, status == 200)
	if rt == "" && prev != nil {
		rt = prev.refreshToken
	}
	status, _, nrt := f.refresh(b, rt)
	cell("refresh", status, status == 200 && nrt != "")
	victim := at
	if victim == "" && prev != nil {
		victim = prev.token
	}
	status = f.revoke(c, victim)
	cell("revoke", status, status == 200)
	// What was revoked or redeemed while a quorum was up must stay dead:
	// 401 or 400 with a quorum, 503 without, never 200.
	revoked := victim
	if !ok && prev != nil {
		revoked = prev.revoked
	}
	status = f.guard(a, revoked)
	st.cells = append(st.cells, fmt.Sprintf("%d", status))
	if status == 200 || (ok && status != 401) {
		t.Errorf("%d down: a revoked token answered %d on A", down, status)
	}
	replayed := code
	if !ok && prev != nil {
		replayed = prev.redeemedCode
	}
	status, _, _ = f.redeem(c, replayed)
	st.cells = append(st.cells, fmt.Sprintf("%d", status))
	if status == 200 || (ok && status != 400) {
		t.Errorf("%d down: a redeemed code answered %d on C", down, status)
	}

	// Spares for the next row, issued while this one still has a quorum.
	if ok {
		st.token, _ = f.clientToken(a)
		st.code, _ = f.code(b)
		var s2 int
		s2, _, st.refreshToken = f.redeem(a, st.code)
		if s2 != 200 {
			t.Fatalf("%d down: redeeming a spare code: %d", down, s2)
		}
		st.code, _ = f.code(c)
		st.revoked, st.redeemedCode = victim, replayed
	}
	return st
}

// clusterNodes stops and starts nodes of the cluster scripts/cassandra.sh
// started, and restarts whatever it stopped when the test ends.
type clusterNodes struct {
	t       *testing.T
	hosts   []string
	mu      sync.Mutex
	stopped []int
}

func (n *clusterNodes) script(args ...string) error {
	addrs := make([]string, len(n.hosts))
	for i, h := range n.hosts {
		addrs[i], _, _ = strings.Cut(h, ":")
	}
	cmd := exec.Command("scripts/cassandra.sh", append([]string{"cluster"}, args...)...)
	cmd.Env = append(os.Environ(), "CASSANDRA_CLUSTER_ADDRESSES="+strings.Join(addrs, ","))
	out, err := cmd.CombinedOutput()
	n.t.Logf("cassandra.sh cluster %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	return err
}

func (n *clusterNodes) stop(node int) {
	n.t.Helper()
	start := time.Now()
	if err := n.script("stop-node", fmt.Sprint(node)); err != nil {
		n.t.Fatalf("stopping node %d: %v", node, err)
	}
	n.mu.Lock()
	n.stopped = append(n.stopped, node)
	n.mu.Unlock()
	n.t.Logf("node %d stopped in %v", node, time.Since(start).Round(time.Millisecond))
}

// restartAll starts the stopped nodes again, together.
func (n *clusterNodes) restartAll() {
	n.mu.Lock()
	stopped := n.stopped
	n.stopped = nil
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, node := range stopped {
		wg.Add(1)
		go func(node int) {
			defer wg.Done()
			if err := n.script("start-node", fmt.Sprint(node)); err != nil {
				n.t.Errorf("restarting node %d: %v", node, err)
			}
		}(node)
	}
	wg.Wait()
}
