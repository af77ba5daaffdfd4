package cassandra

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// dcName is what a data center may be called in a replication map here:
// letters, digits, dots, dashes and underscores, so it can go in a CQL
// string literal as it is.
var dcName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ReplicationMap turns a replication setting into a CQL replication map:
//
//	SimpleStrategy <rf>
//	NetworkTopologyStrategy <dc>:<rf> [<dc>:<rf>...]
//
// as Kong's cassandra_repl_strategy and cassandra_data_centers do.
func ReplicationMap(spec []string) (string, error) {
	if len(spec) < 2 {
		return "", errors.New("replication: want SimpleStrategy <rf> or NetworkTopologyStrategy <dc>:<rf>...")
	}
	rf := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 99 {
			return 0, fmt.Errorf("replication: replication factor %q: want 1 to 99", s)
		}
		return n, nil
	}
	switch strings.ToLower(spec[0]) {
	case "simplestrategy":
		if len(spec) != 2 {
			return "", errors.New("replication: SimpleStrategy takes one replication factor")
		}
		n, err := rf(spec[1])
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", n), nil
	case "networktopologystrategy":
		parts := []string{"'class': 'NetworkTopologyStrategy'"}
		seen := map[string]bool{}
		for _, p := range spec[1:] {
			dc, f, ok := strings.Cut(p, ":")
			if !ok || !dcName.MatchString(dc) {
				return "", fmt.Errorf("replication: %q: want <data center>:<replication factor>", p)
			}
			if seen[dc] {
				return "", fmt.Errorf("replication: data center %q given twice", dc)
			}
			seen[dc] = true
			n, err := rf(f)
			if err != nil {
				return "", err
			}
			parts = append(parts, fmt.Sprintf("'%s': %d", dc, n))
		}
		return "{" + strings.Join(parts, ", ") + "}", nil
	}
	return "", fmt.Errorf("replication: unknown strategy %q: want SimpleStrategy or NetworkTopologyStrategy", spec[0])
}

// createKeyspaceStatement is the statement that creates keyspace ks with
// the replication map repl.
func createKeyspaceStatement(ks, repl string) string {
	return fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s", ks, repl)
}
