package cassandra

import (
	"errors"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tokengate/caddy-oauth2/stores"
	"github.com/tokengate/caddy-oauth2/stores/storetest"
)

func TestReplicationMap(t *testing.T) {
	for _, c := range []struct {
		spec []string
		want string // "" for an error
	}{
		{[]string{"SimpleStrategy", "3"}, "{'class': 'SimpleStrategy', 'replication_factor': 3}"},
		{[]string{"simplestrategy", "1"}, "{'class': 'SimpleStrategy', 'replication_factor': 1}"},
		{[]string{"NetworkTopologyStrategy", "dc1:3", "eu-west_2:2"}, "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'eu-west_2': 2}"},
		{[]string{"SimpleStrategy"}, ""},
		{[]string{"SimpleStrategy", "0"}, ""},
		{[]string{"SimpleStrategy", "3", "4"}, ""},
		{[]string{"SimpleStrategy", "x"}, ""},
		{[]string{"NetworkTopologyStrategy", "dc1"}, ""},
		{[]string{"NetworkTopologyStrategy", "dc1:3", "dc1:2"}, ""},
		{[]string{"NetworkTopologyStrategy", "d'c:3"}, ""},
		{[]string{"EverywhereStrategy", "3"}, ""},
	} {
		got, err := ReplicationMap(c.spec)
		if c.want == "" && err == nil || c.want != "" && got != c.want {
			t.Errorf("ReplicationMap(%q) = %q, %v; want %q", c.spec, got, err, c.want)
		}
	}
}

func TestCaddyfileReplication(t *testing.T) {
	var s Store
	d := caddyfile.NewTestDispenser(`cassandra {
		hosts 127.0.0.1
		create_schema
		replication NetworkTopologyStrategy dc1:3 dc2:3
	}`)
	if err := s.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Replication, " ") != "NetworkTopologyStrategy dc1:3 dc2:3" {
		t.Fatalf("replication %q", s.Replication)
	}
	err := new(Store).UnmarshalCaddyfile(caddyfile.NewTestDispenser("cassandra {\n hosts 127.0.0.1\n replication SimpleStrategy none\n}"))
	if err == nil || !strings.Contains(err.Error(), `replication factor "none"`) || !strings.Contains(err.Error(), "Testfile:3") {
		t.Fatalf("bad replication factor: %v", err)
	}
	noSchema := Store{Hosts: []string{"127.0.0.1"}, Replication: []string{"SimpleStrategy", "1"}}
	if err := noSchema.Validate(); err == nil || !strings.Contains(err.Error(), "replication needs create_schema") {
		t.Fatalf("replication without create_schema: %v", err)
	}
}

// TestStartCreatesKeyspace: with create_schema and replication, Start
// creates a missing keyspace with that replication, then the tables; without
// replication, the error names the CREATE KEYSPACE statement to run.
func TestStartCreatesKeyspace(t *testing.T) {
	hosts := testHosts(t)
	const ks = "oauth2_test_created"
	admin := gocql.NewCluster(hosts...)
	admin.Timeout = 30 * time.Second
	s, err := admin.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	drop := func() {
		if err := s.Query("DROP KEYSPACE IF EXISTS " + ks).Exec(); err != nil {
			t.Fatalf("dropping %s: %v", ks, err)
		}
	}
	drop()
	defer drop()

	e, _ := NewEngine(Config{Hosts: hosts, Keyspace: ks, Consistency: defaults(t), CreateSchema: true})
	_, err = e.Start(testCtx(t, 60*time.Second))
	e.Close()
	if !errors.Is(err, stores.ErrUnavailable) || !strings.Contains(err.Error(), "CREATE KEYSPACE IF NOT EXISTS "+ks+" WITH replication") {
		t.Fatalf("Start without replication on a missing keyspace: %v", err)
	}

	e, _ = NewEngine(Config{Hosts: hosts, Keyspace: ks, Consistency: defaults(t), CreateSchema: true,
		Replication: []string{"SimpleStrategy", "1"}, Timeout: 30 * time.Second})
	defer e.Close()
	info, err := e.Start(testCtx(t, 120*time.Second))
	if err != nil {
		t.Fatalf("Start with replication: %v", err)
	}
	if info.Replicas != 1 || !strings.HasSuffix(info.Replication["class"], "SimpleStrategy") {
		t.Fatalf("created keyspace replication %v (replicas %d)", info.Replication, info.Replicas)
	}
	tok := &stores.Token{Key: storetest.Key(), Kind: stores.AccessToken, ClientID: "c", Scope: "read",
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := e.InsertTokens(testCtx(t, 30*time.Second), tok); err != nil {
		t.Fatalf("InsertTokens into the created keyspace: %v", err)
	}
	if _, err := e.LookupToken(testCtx(t, 30*time.Second), stores.AccessToken, tok.Key); err != nil {
		t.Fatalf("LookupToken in the created keyspace: %v", err)
	}
}
