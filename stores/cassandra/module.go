package cassandra

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/stores"
)

func init() { caddy.RegisterModule(new(Store)) }

// DefaultKeyspace is the keyspace used when none is configured.
const DefaultKeyspace = "oauth"

// pool shares one engine, and so one Cassandra session, between every store
// configured alike, across config reloads: a reload does not reconnect.
var pool = caddy.NewUsagePool()

// Store keeps codes and tokens in Apache Cassandra. Rows expire through
// Cassandra TTLs; codes and refresh tokens are redeemed with lightweight
// transactions. Provisioning does not connect: the session is created at
// Start or on first use, and again on a later use if that failed.
type Store struct {
	// Hosts are the contact points, as host or host:port (port 9042 if
	// omitted); the driver discovers the other nodes. Placeholders such as
	// {env.CASSANDRA_HOSTS} are replaced, and a replaced value may hold
	// several hosts separated by commas or spaces. Default: none, required.
	Hosts []string `json:"hosts,omitempty"`
	// Keyspace holds the tables; it must exist. Default: "oauth".
	Keyspace string `json:"keyspace,omitempty"`
	// ReadConsistency is the consistency level of reads; ANY is not
	// allowed. Default: ONE.
	ReadConsistency string `json:"read_consistency,omitempty"`
	// WriteConsistency is the consistency level of writes and deletes, and
	// of the commit of lightweight transactions (ONE in place of ANY).
	// Default: ANY.
	WriteConsistency string `json:"write_consistency,omitempty"`
	// SerialConsistency is the consistency level of the Paxos phase of the
	// lightweight transactions that redeem codes and refresh tokens: SERIAL
	// or LOCAL_SERIAL. Default: SERIAL.
	SerialConsistency string `json:"serial_consistency,omitempty"`
	// LocalDC, if set, sends queries to the nodes of this data center first.
	// Default: none (all nodes, token-aware round robin).
	LocalDC string `json:"local_dc,omitempty"`
	// Username, if set, authenticates with Cassandra's
	// PasswordAuthenticator; placeholders such as {env.CASSANDRA_USER} are
	// replaced. Default: none (no authentication).
	Username string `json:"username,omitempty"`
	// Password goes with Username; placeholders such as
	// {env.CASSANDRA_PASSWORD} or {file./run/secrets/cassandra} are
	// replaced, so the secret need not be in the config. Default: none.
	Password string `json:"password,omitempty"`
	// Timeout bounds connecting and each query on the client side.
	// Default: 6s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// CreateSchema creates the tables at start if they are missing (the
	// keyspace must exist). Default: false, the tables must exist.
	CreateSchema bool `json:"create_schema,omitempty"`

	// Replication, with CreateSchema, creates a missing keyspace with this
	// replication: ["SimpleStrategy", "<rf>"] or
	// ["NetworkTopologyStrategy", "<dc>:<rf>", ...]. Default: none, a
	// missing keyspace is an error naming the statement to run.
	Replication []string `json:"replication,omitempty"`

	// Engine is the shared store behind this module; its methods make
	// Store a stores.Store.
	*Engine `json:"-"`
	poolKey string
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Store) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "oauth2.stores.cassandra",
		New: func() caddy.Module { return new(Store) },
	}
}

// Provision replaces placeholders and takes the shared engine from the
// pool. It does not connect: `caddy validate` provisions too.
func (s *Store) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	cfg, err := s.config()
	if err != nil {
		return err
	}
	cfg.Logger = s.logger
	s.poolKey = poolKey(cfg)
	v, loaded, err := pool.LoadOrNew(s.poolKey, func() (caddy.Destructor, error) {
		return NewEngine(cfg)
	})
	if err != nil {
		s.poolKey = ""
		return fmt.Errorf("cassandra store: %w", err)
	}
	s.Engine = v.(*Engine)
	if loaded {
		s.Engine.SetLogger(s.logger)
	}
	return nil
}

// Validate checks the settings; it needs no placeholder values, so it
// checks only what placeholders cannot change.
func (s *Store) Validate() error {
	if len(s.Hosts) == 0 {
		return errors.New("cassandra store: hosts is required")
	}
	if _, err := ParseConsistencies(s.ReadConsistency, s.WriteConsistency, s.SerialConsistency); err != nil {
		return fmt.Errorf("cassandra store: %w", err)
	}
	if s.Keyspace != "" && !strings.Contains(s.Keyspace, "{") {
		if err := CheckKeyspace(s.Keyspace); err != nil {
			return fmt.Errorf("cassandra store: %w", err)
		}
	}
	if s.Timeout < 0 {
		return errors.New("cassandra store: timeout must not be negative")
	}
	return s.checkReplication()
}

func (s *Store) checkReplication() error {
	if len(s.Replication) == 0 {
		return nil
	}
	if _, err := ReplicationMap(s.Replication); err != nil {
		return fmt.Errorf("cassandra store: %w", err)
	}
	if !s.CreateSchema {
		return errors.New("cassandra store: replication needs create_schema")
	}
	return nil
}

// Start connects, checks the keyspace and creates or checks the tables, and
// warns when the consistency levels let a read miss a write.
func (s *Store) Start(ctx context.Context) error {
	info, err := s.Engine.Start(ctx)
	if err != nil {
		return fmt.Errorf("cassandra store: %w", err)
	}
	cfg := s.Engine.Config()
	if cfg.Consistency.ReadsSeeWrites(info.Replicas) {
		return nil
	}
	logger := s.logger
	if logger == nil {
		logger = zap.NewNop()
	}
	logger.Warn("Cassandra keyspace has more than one replica but reads may not see writes: "+
		"a token written at "+cfg.Consistency.Write.String()+" may not be readable at once from another node, "+
		"and a revocation may not be seen at once; use QUORUM or LOCAL_QUORUM for read_consistency and "+
		"write_consistency in production (codes and refresh tokens are still single use: they go through "+
		"lightweight transactions at "+cfg.Consistency.Serial.String()+")",
		zap.String("keyspace", cfg.Keyspace),
		zap.Int("replicas", info.Replicas),
		zap.Stringer("read_consistency", cfg.Consistency.Read),
		zap.Stringer("write_consistency", cfg.Consistency.Write))
	return nil
}

// Cleanup releases the shared engine; the last store using it closes the
// session.
func (s *Store) Cleanup() error {
	if s.poolKey == "" {
		return nil
	}
	_, err := pool.Delete(s.poolKey)
	s.poolKey = ""
	return err
}

// config resolves placeholders and defaults into an engine configuration.
func (s *Store) config() (Config, error) {
	repl := caddy.NewReplacer()
	var hosts []string
	for _, h := range s.Hosts {
		hosts = append(hosts, strings.FieldsFunc(repl.ReplaceAll(h, ""), func(r rune) bool {
			return r == ',' || r == ' ' || r == '\t' || r == '\n'
		})...)
	}
	cfg := Config{
		Hosts:        hosts,
		Keyspace:     repl.ReplaceAll(s.Keyspace, ""),
		LocalDC:      repl.ReplaceAll(s.LocalDC, ""),
		Username:     repl.ReplaceAll(s.Username, ""),
		Password:     repl.ReplaceAll(s.Password, ""),
		Timeout:      time.Duration(s.Timeout),
		CreateSchema: s.CreateSchema,
		Replication:  s.Replication,
	}
	if cfg.Keyspace == "" {
		cfg.Keyspace = DefaultKeyspace
	}
	if len(cfg.Hosts) == 0 {
		return cfg, errors.New("cassandra store: hosts is required")
	}
	if err := CheckKeyspace(cfg.Keyspace); err != nil {
		return cfg, fmt.Errorf("cassandra store: %w", err)
	}
	cons, err := ParseConsistencies(s.ReadConsistency, s.WriteConsistency, s.SerialConsistency)
	if err != nil {
		return cfg, fmt.Errorf("cassandra store: %w", err)
	}
	cfg.Consistency = cons
	if cfg.Timeout < 0 {
		return cfg, errors.New("cassandra store: timeout must not be negative")
	}
	if cfg.Password != "" && cfg.Username == "" {
		return cfg, errors.New("cassandra store: password without username")
	}
	if err := s.checkReplication(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// poolKey identifies everything a session depends on. The password enters
// only hashed: pool keys can show up in debugging output.
func poolKey(cfg Config) string {
	pw := sha256.Sum256([]byte(cfg.Password))
	k, _ := json.Marshal([]any{
		cfg.Hosts, strings.ToLower(cfg.Keyspace), cfg.LocalDC, cfg.Username, hex.EncodeToString(pw[:8]),
		cfg.Consistency.Read.String(), cfg.Consistency.Write.String(), cfg.Consistency.Serial.String(),
		cfg.Timeout.String(), cfg.CreateSchema, cfg.Replication,
	})
	return "cassandra/" + string(k)
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Store)(nil)
	_ caddy.Validator       = (*Store)(nil)
	_ caddy.CleanerUpper    = (*Store)(nil)
	_ caddyfile.Unmarshaler = (*Store)(nil)
	_ stores.Store          = (*Store)(nil)
	_ stores.ClientRegistry = (*Store)(nil)
	_ stores.SingleUse      = (*Store)(nil)
	_ stores.Starter        = (*Store)(nil)
	_ caddy.Destructor      = (*Engine)(nil)
)
