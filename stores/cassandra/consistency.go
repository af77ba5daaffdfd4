package cassandra

import (
	"fmt"
	"strings"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// Default consistency levels: the cheapest Cassandra offers. They suit a
// single node or a development cluster; production clusters with more than
// one replica want QUORUM or LOCAL_QUORUM (see the warning logged at Start).
const (
	DefaultReadConsistency   = "ONE"
	DefaultWriteConsistency  = "ANY"
	DefaultSerialConsistency = "SERIAL"
)

// consistencyNames lists the names ParseConsistency accepts, for messages.
const consistencyNames = "ANY, ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE, SERIAL, LOCAL_SERIAL"

// parseConsistency reads a consistency level name, case-insensitively.
func parseConsistency(name string) (gocql.Consistency, error) {
	var c gocql.Consistency
	if err := c.UnmarshalText([]byte(strings.ToUpper(strings.TrimSpace(name)))); err != nil {
		return 0, fmt.Errorf("unknown consistency level %q (want one of %s)", name, consistencyNames)
	}
	return c, nil
}

// Consistencies are the three levels the store uses, parsed and checked.
type Consistencies struct {
	Read, Write, Serial gocql.Consistency
}

// ParseConsistencies parses and checks the read, write and serial level
// names; an empty name takes its default.
func ParseConsistencies(read, write, serial string) (Consistencies, error) {
	var c Consistencies
	var err error
	if read == "" {
		read = DefaultReadConsistency
	}
	if write == "" {
		write = DefaultWriteConsistency
	}
	if serial == "" {
		serial = DefaultSerialConsistency
	}
	if c.Read, err = parseConsistency(read); err != nil {
		return c, fmt.Errorf("read_consistency: %w", err)
	}
	if c.Read == gocql.Any {
		// Cassandra refuses it ("ANY ConsistencyLevel is only supported
		// for writes"); better to say so at config time than on every read.
		return c, fmt.Errorf("read_consistency: ANY is only valid for writes; use ONE, LOCAL_ONE, QUORUM or LOCAL_QUORUM")
	}
	if c.Write, err = parseConsistency(write); err != nil {
		return c, fmt.Errorf("write_consistency: %w", err)
	}
	if c.Write == gocql.Serial || c.Write == gocql.LocalSerial {
		return c, fmt.Errorf("write_consistency: %s is only valid for serial_consistency or reads", c.Write)
	}
	if c.Serial, err = parseConsistency(serial); err != nil {
		return c, fmt.Errorf("serial_consistency: %w", err)
	}
	if c.Serial != gocql.Serial && c.Serial != gocql.LocalSerial {
		return c, fmt.Errorf("serial_consistency: %s is not a serial level; use SERIAL or LOCAL_SERIAL", c.Serial)
	}
	return c, nil
}

// Commit is the consistency of the commit phase of the lightweight
// transactions that consume codes and refresh tokens (a conditional
// statement's own consistency level is its commit consistency).
//
// It follows write_consistency, except ANY. Cassandra 5.0 accepts ANY there
// (only SERIAL and LOCAL_SERIAL are rejected, and some versions or
// write_consistency_levels_disallowed guardrails reject ANY too), but with
// ANY the coordinator answers before any replica has applied the commit:
// the Paxos round is decided, so a later transaction still sees the key as
// consumed, but a plain read right after might not, and an unapplied Paxos
// state is re-proposed later with a newer timestamp, which we observed
// overwrite a newer plain write. ONE (LOCAL_ONE with LOCAL_SERIAL) is the
// weakest level where one replica has applied the consumption before the
// caller hears it won.
func (c Consistencies) Commit() gocql.Consistency {
	if c.Write != gocql.Any {
		return c.Write
	}
	if c.Serial == gocql.LocalSerial {
		return gocql.LocalOne
	}
	return gocql.One
}

// replicasFor says how many of rf replicas must answer at level c.
func replicasFor(c gocql.Consistency, rf int) int {
	switch c {
	case gocql.Any:
		return 0
	case gocql.One, gocql.LocalOne:
		return 1
	case gocql.Two:
		return 2
	case gocql.Three:
		return 3
	case gocql.All:
		return rf
	default: // the quorum and serial levels
		return rf/2 + 1
	}
}

// ReadsSeeWrites reports whether a read at c.Read is sure to see a write
// acknowledged at c.Write when each row has rf replicas (R + W > RF).
func (c Consistencies) ReadsSeeWrites(rf int) bool {
	return rf <= 1 || replicasFor(c.Read, rf)+replicasFor(c.Write, rf) > rf
}
