// Command cqlping checks that a Cassandra node answers CQL: it connects and
// runs SELECT release_version FROM system.local, retrying until a deadline.
// scripts/cassandra.sh uses it, as no cqlsh is installed.
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
	flag.Parse()

	deadline := time.Now().Add(*wait)
	for {
		version, err := ping(strings.Split(*hosts, ","))
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
