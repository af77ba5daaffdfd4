// Command cqlping checks that a Cassandra node answers CQL: it connects and
// runs SELECT release_version FROM system.local, retrying until a deadline.
// scripts/cassandra.sh uses it, as no cqlsh is installed. With -peers N it
// also waits until every listed node sees N peers in system.peers_v2 (a
// formed cluster).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

func main() {
	hosts := flag.String("hosts", "127.0.0.1:9042", "comma-separated host:port list")
	wait := flag.Duration("wait", 60*time.Second, "how long to keep trying")
	peers := flag.Int("peers", 0, "wait until every host sees this many peers")
	flag.Parse()

	deadline := time.Now().Add(*wait)
	for {
		version, err := ping(strings.Split(*hosts, ","))
		if err == nil && *peers > 0 {
			err = seePeers(strings.Split(*hosts, ","), *peers)
		}
		if err == nil {
			fmt.Printf("cqlping: Cassandra %s answers on %s\n", version, *hosts)
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "cqlping: %s: %v\n", *hosts, err)
			os.Exit(1)
		}
		time.Sleep(time.Second)
	}
}

func ping(hosts []string) (string, error) {
	cluster := gocql.NewCluster(hosts...)
	cluster.Consistency = gocql.One
	cluster.Timeout = 5 * time.Second
	cluster.ConnectTimeout = 5 * time.Second
	cluster.DisableInitialHostLookup = true
	session, err := cluster.CreateSession()
	if err != nil {
		return "", err
	}
	defer session.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var version string
	err = session.Query("SELECT release_version FROM system.local").ScanContext(ctx, &version)
	return version, err
}

// seePeers checks, node by node, that each sees want peers.
func seePeers(hosts []string, want int) error {
	for _, h := range hosts {
		cluster := gocql.NewCluster(h)
		cluster.Consistency = gocql.One
		cluster.Timeout = 5 * time.Second
		cluster.ConnectTimeout = 5 * time.Second
		cluster.DisableInitialHostLookup = true
		session, err := cluster.CreateSession()
		if err != nil {
			return fmt.Errorf("%s: %w", h, err)
		}
		n := session.Query("SELECT peer FROM system.peers_v2").Iter().NumRows()
		session.Close()
		if n != want {
			return fmt.Errorf("%s sees %d peers, want %d", h, n, want)
		}
	}
	return nil
}
