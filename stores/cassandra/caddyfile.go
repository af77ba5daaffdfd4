package cassandra

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	cassandra {
//	    hosts              <host[:port]> [<host[:port]>...]
//	    keyspace           <name>
//	    read_consistency   <level>
//	    write_consistency  <level>
//	    serial_consistency SERIAL|LOCAL_SERIAL
//	    local_dc           <data center>
//	    username           <name>
//	    password           <password>
//	    timeout            <duration>
//	    create_schema
//	    replication        SimpleStrategy <rf> | NetworkTopologyStrategy <dc>:<rf>...
//	}
//
// hosts is required; levels are Cassandra consistency level names
// (ONE, QUORUM, LOCAL_QUORUM, ...), case-insensitive.
func (s *Store) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the store name, "cassandra"
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("duplicate subdirective %q", opt)
		}
		seen[opt] = true
		switch opt {
		case "hosts":
			s.Hosts = d.RemainingArgs()
			if len(s.Hosts) == 0 {
				return d.ArgErr()
			}
			continue
		case "create_schema":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.CreateSchema = true
			continue
		case "replication":
			s.Replication = d.RemainingArgs()
			if _, err := ReplicationMap(s.Replication); err != nil {
				return d.Err(err.Error())
			}
			continue
		case "keyspace", "read_consistency", "write_consistency", "serial_consistency",
			"local_dc", "username", "password", "timeout":
		default:
			return d.Errf("unrecognized subdirective %q", opt)
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		arg := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		switch opt {
		case "keyspace":
			s.Keyspace = arg
		case "read_consistency", "write_consistency", "serial_consistency":
			c, err := parseConsistency(arg)
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			switch opt {
			case "read_consistency":
				s.ReadConsistency = c.String()
			case "write_consistency":
				s.WriteConsistency = c.String()
			default:
				s.SerialConsistency = c.String()
			}
		case "local_dc":
			s.LocalDC = arg
		case "username":
			s.Username = arg
		case "password":
			s.Password = arg
		case "timeout":
			dur, err := caddy.ParseDuration(arg)
			if err != nil || dur <= 0 {
				return d.Errf("timeout must be a positive duration: %q", arg)
			}
			s.Timeout = caddy.Duration(dur)
		}
	}
	return nil
}
