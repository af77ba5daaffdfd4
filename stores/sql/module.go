// Package sql is the relational store: codes and tokens in MySQL/MariaDB,
// PostgreSQL, SQLite, Microsoft SQL Server, Oracle or IBM Db2, through one
// implementation whose per-system differences sit in dialect.go.
//
// The tables come from sql/<dialect>/oauth-server.sql (run it once, or set
// create_schema); Start checks their version. Rows are keyed by the hashed
// token, expired rows are purged in bounded batches by the database's clock,
// and when several gateways share a database a lease row lets one purge at a
// time.
//
// DSN forms per dialect (the dsn option, placeholders such as
// {env.OAUTH2_DSN} allowed):
//
//   - mysql (MySQL 8, MariaDB 10.5+; github.com/go-sql-driver/mysql):
//     user:password@tcp(host:3306)/database
//     The store adds clientFoundRows=true and, unless given,
//     interpolateParams=true. parseTime is not needed.
//   - postgres (PostgreSQL 12+; github.com/jackc/pgx/v5):
//     postgres://user:password@host:5432/database?sslmode=verify-full
//     or the key=value form: host=db user=oauth2 password=... dbname=oauth2
//   - sqlite (pure Go, modernc.org/sqlite): a file path or file: URI,
//     e.g. /var/lib/caddy/oauth2.db or file:/var/lib/caddy/oauth2.db?_pragma=foreign_keys(1).
//     The store adds _pragma=busy_timeout(10000) and _pragma=journal_mode(wal)
//     unless the DSN sets them.
//   - sqlserver (SQL Server 2016+, Azure SQL; github.com/microsoft/go-mssqldb):
//     sqlserver://user:password@host:1433?database=oauth2
//   - oracle (Oracle 12.2+; github.com/sijms/go-ora/v2, pure Go):
//     oracle://user:password@host:1521/service_name
//   - db2 (Db2 LUW 11.1+; github.com/ibmdb/go_ibm_db, needs cgo and a build
//     with -tags db2):
//     HOSTNAME=host;PORT=50000;DATABASE=oauth2;UID=user;PWD=password
package sql

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/stores"
)

func init() { caddy.RegisterModule(new(Store)) }

// Store keeps codes and tokens in a relational database.
//
// Stores on the same dialect and DSN share one connection pool, which also
// survives a config reload: the pool settings of the most recently
// provisioned store apply to it.
type Store struct {
	// Dialect is the database system: mysql (also MariaDB), postgres,
	// sqlite, sqlserver, oracle or db2. Default: none, required.
	Dialect string `json:"dialect,omitempty"`
	// DSN is the driver's data source name (see the package documentation
	// for each dialect's form). Placeholders such as {env.OAUTH2_DSN} and
	// {file./run/secrets/dsn} are replaced. Default: none, required.
	DSN string `json:"dsn,omitempty"`
	// TablePrefix starts every table and index name. Default: oauth_, the
	// prefix in the bundled schema files.
	TablePrefix string `json:"table_prefix,omitempty"`
	// MaxOpenConns caps the pool's connections. Default: 20.
	MaxOpenConns int `json:"max_open_conns,omitempty"`
	// MaxIdleConns is how many connections stay open while idle. Default:
	// the same as max_open_conns, so the guard's lookups never dial.
	MaxIdleConns int `json:"max_idle_conns,omitempty"`
	// ConnMaxLifetime recycles connections older than this. Default: 30m.
	ConnMaxLifetime caddy.Duration `json:"conn_max_lifetime,omitempty"`
	// CreateSchema applies the bundled schema at start when its tables
	// are missing. Default: false; the tables must exist.
	CreateSchema bool `json:"create_schema,omitempty"`
	// PurgeBatch fixes the rows one purge statement deletes; it overrides
	// the batch size the purger asks for and stops batches from growing.
	// Default: the purger's as the first batch, grown while the guard's
	// lookups stay fast.
	PurgeBatch int `json:"purge_batch,omitempty"`
	// LockTimeout bounds how long a Db2 statement waits for a row lock
	// (set on every connection, in whole seconds rounded up): IBM's
	// driver does not cancel a statement at the request's deadline. Set
	// it to the app's store_timeout. Other dialects cancel by the
	// deadline and ignore it. Default: 2s, the default store_timeout.
	LockTimeout caddy.Duration `json:"lock_timeout,omitempty"`
	// PurgeLease is how long a purging gateway holds the purge lease
	// between renewals, and so how long a gateway that died while purging
	// keeps the others from purging. Default: 2m.
	PurgeLease caddy.Duration `json:"purge_lease,omitempty"`

	// Engine is the shared store behind this module; its methods make
	// Store a stores.Store.
	*Engine `json:"-"`
	poolKey string
}

// Pool defaults.
const (
	defaultMaxOpenConns    = 20
	defaultConnMaxLifetime = 30 * time.Minute
)

// pool shares database handles between stores with the same dialect and
// DSN, across config reloads.
var pool = caddy.NewUsagePool()

// pooledDB is a pool entry.
type pooledDB struct{ db *sql.DB }

// Destruct closes the handle when its last store is cleaned up.
func (p *pooledDB) Destruct() error { return p.db.Close() }

// CaddyModule returns the Caddy module information.
func (*Store) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "oauth2.stores.sql",
		New: func() caddy.Module { return new(Store) },
	}
}

// Provision takes the database handle from the pool. It does not connect:
// `caddy validate` provisions too.
func (s *Store) Provision(ctx caddy.Context) error {
	if s.TablePrefix == "" {
		s.TablePrefix = DefaultTablePrefix
	}
	if s.MaxOpenConns == 0 {
		s.MaxOpenConns = defaultMaxOpenConns
	}
	if s.MaxIdleConns == 0 {
		s.MaxIdleConns = s.MaxOpenConns
	}
	if s.ConnMaxLifetime == 0 {
		s.ConnMaxLifetime = caddy.Duration(defaultConnMaxLifetime)
	}
	if s.LockTimeout == 0 {
		s.LockTimeout = caddy.Duration(DefaultLockTimeout)
	}
	if err := s.validate(); err != nil {
		return err
	}
	dsn := caddy.NewReplacer().ReplaceAll(s.DSN, "")
	if dsn == "" {
		return fmt.Errorf("sql store: dsn %q is empty after replacing placeholders", s.DSN)
	}
	key := s.Dialect + "\x00" + dsn
	if d, _ := lookupDialect(s.Dialect); d.connInit != nil {
		// The connections differ by their options: one pool per setting.
		key += "\x00" + time.Duration(s.LockTimeout).String()
	}
	val, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
		db, err := OpenWith(s.Dialect, dsn, ConnOptions{LockTimeout: time.Duration(s.LockTimeout)})
		if err != nil {
			return nil, err
		}
		return &pooledDB{db: db}, nil
	})
	if err != nil {
		return fmt.Errorf("sql store: %w", err)
	}
	s.poolKey = key
	db := val.(*pooledDB).db
	db.SetMaxOpenConns(s.MaxOpenConns)
	db.SetMaxIdleConns(s.MaxIdleConns)
	db.SetConnMaxLifetime(time.Duration(s.ConnMaxLifetime))
	s.Engine, err = NewEngine(db, s.Dialect, Options{
		TablePrefix:  s.TablePrefix,
		CreateSchema: s.CreateSchema,
		PurgeBatch:   s.PurgeBatch,
		// Zero means the engine's default (2m).
		LeaseDuration:  time.Duration(s.PurgeLease),
		PurgeBatchDone: purgeLogger(ctx.Logger()),
	})
	if err != nil {
		return fmt.Errorf("sql store: %w", err)
	}
	return nil
}

// Validate checks the configuration.
func (s *Store) Validate() error { return s.validate() }

// purgeLogger logs each purge batch at debug level, to watch the pacing.
func purgeLogger(log *zap.Logger) func(string, int, time.Duration, time.Duration, time.Duration) {
	return func(table string, n int, took, lookup, rest time.Duration) {
		if ce := log.Check(zap.DebugLevel, "purge batch"); ce != nil {
			ce.Write(zap.String("table", table), zap.Int("batch", n), zap.Duration("took", took),
				zap.Duration("lookup", lookup), zap.Duration("rest", rest))
		}
	}
}

func (s *Store) validate() error {
	if s.Dialect == "" {
		return fmt.Errorf("sql store: dialect is required")
	}
	if _, err := lookupDialect(s.Dialect); err != nil {
		return fmt.Errorf("sql store: %w", err)
	}
	if s.DSN == "" {
		return fmt.Errorf("sql store: dsn is required")
	}
	if s.TablePrefix != "" && !prefixPattern.MatchString(s.TablePrefix) {
		return fmt.Errorf("sql store: table_prefix %q: want a letter then up to 29 letters, digits or underscores", s.TablePrefix)
	}
	if s.MaxOpenConns < 0 || s.MaxIdleConns < 0 || s.ConnMaxLifetime < 0 || s.PurgeBatch < 0 || s.LockTimeout < 0 || s.PurgeLease < 0 {
		return fmt.Errorf("sql store: max_open_conns, max_idle_conns, conn_max_lifetime, purge_batch, lock_timeout and purge_lease must not be negative")
	}
	return nil
}

// Start connects and checks (or, with create_schema, creates) the schema.
func (s *Store) Start(ctx context.Context) error {
	if s.Engine == nil {
		return fmt.Errorf("sql store: not provisioned")
	}
	return s.Engine.Start(ctx)
}

// Cleanup releases the store's hold on the shared pool; the last one
// closes it.
func (s *Store) Cleanup() error {
	if s.poolKey == "" {
		return nil
	}
	_, err := pool.Delete(s.poolKey)
	s.poolKey = ""
	return err
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	sql {
//		dialect           mysql|postgres|sqlite|sqlserver|oracle|db2
//		dsn               <dsn>
//		table_prefix      <prefix>
//		max_open_conns    <n>
//		max_idle_conns    <n>
//		conn_max_lifetime <duration>
//		create_schema
//		purge_batch       <n>
//		lock_timeout      <duration>
//		purge_lease       <duration>
//	}
func (s *Store) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the store name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("duplicate subdirective %q", opt)
		}
		seen[opt] = true
		switch opt {
		case "dialect", "dsn", "table_prefix":
			if !d.NextArg() {
				return d.ArgErr()
			}
			val := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "dialect":
				if _, err := lookupDialect(val); err != nil {
					return d.Err(err.Error())
				}
				s.Dialect = val
			case "dsn":
				s.DSN = val
			case "table_prefix":
				if !prefixPattern.MatchString(val) {
					return d.Errf("table_prefix %q: want a letter then up to 29 letters, digits or underscores", val)
				}
				s.TablePrefix = val
			}
		case "max_open_conns", "max_idle_conns", "purge_batch":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("%s: want a positive integer, got %q", opt, d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "max_open_conns":
				s.MaxOpenConns = n
			case "max_idle_conns":
				s.MaxIdleConns = n
			case "purge_batch":
				s.PurgeBatch = n
			}
		case "conn_max_lifetime", "lock_timeout", "purge_lease":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("%s: want a positive duration, got %q", opt, d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if opt == "purge_lease" {
				s.PurgeLease = caddy.Duration(dur)
			} else if opt == "lock_timeout" {
				s.LockTimeout = caddy.Duration(dur)
			} else {
				s.ConnMaxLifetime = caddy.Duration(dur)
			}
		case "create_schema":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.CreateSchema = true
		default:
			return d.Errf("unrecognized subdirective %q", opt)
		}
	}
	if s.Dialect == "" {
		return d.Err("sql store: dialect is required")
	}
	if s.DSN == "" {
		return d.Err("sql store: dsn is required")
	}
	return nil
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
)
