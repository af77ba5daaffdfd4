package sql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	schemafiles "github.com/tokengate/caddy-oauth2/sql"
	"github.com/tokengate/caddy-oauth2/stores"
)

// SchemaVersion is the version of the bundled schema (sql/<dialect>/oauth-server.sql)
// this store needs.
const SchemaVersion = 5

// DefaultTablePrefix is the prefix of the tables in the bundled schema files.
const DefaultTablePrefix = "oauth_"

// DefaultPurgeBatch is how many rows one purge statement deletes at most
// when neither the configuration nor the caller says.
const DefaultPurgeBatch = 1000

// defaultLease is how long a purger holds the purge lease; it is renewed
// after every batch, so it bounds only how long a crashed gateway blocks
// the others.
const defaultLease = 2 * time.Minute

// schemaWait is how long Start waits for another gateway to finish
// creating the schema.
const schemaWait = 10 * time.Second

// leaseName is the lease row every purge takes.
const leaseName = "purge"

var prefixPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,29}$`)

// Options configure an Engine.
type Options struct {
	// TablePrefix starts every table and index name. Default: oauth_.
	TablePrefix string
	// CreateSchema makes Start apply the bundled schema when its tables are
	// missing.
	CreateSchema bool
	// PurgeBatch, when positive, overrides the batch size callers pass to
	// PurgeExpired*.
	PurgeBatch int
	// LeaseDuration is how long one purge may hold the purge lease before
	// renewing it. Default: 2 minutes.
	LeaseDuration time.Duration
	// Holder names this engine in the purge lease. Default: host name,
	// process id and a random suffix, so an operator can tell which
	// gateway holds it.
	Holder string
	// PurgeBatchDone, when set, is told of every purge batch: the table,
	// the batch size, how long it took, the guard's lookup latency
	// meanwhile (0 if none was taken) and the rest after it.
	PurgeBatchDone func(table string, n int, took, lookup, rest time.Duration)
}

// Engine is a stores.Store over one database/sql database. It knows
// nothing of Caddy; the Store module shares one *sql.DB between engines.
type Engine struct {
	db     *sql.DB
	d      *dialect
	opts   Options
	tables tables
	q      statements
	// schemaWait bounds the wait for another gateway's create_schema.
	schemaWait time.Duration
}

type tables struct {
	version, codes, access, refresh, revoked, lease, keys, clients, once string
}

type statements struct {
	version, leaseCount, leaseInsert, leaseAcquire, leaseRelease string

	insertCode, consumeCode, selectCode string

	insertAccess, insertRefresh   string
	lookupAccess, lookupRefresh   string
	consumeRefresh, selectRefresh string
	revokeAccess, revokeRefresh   string
	familyAccess, familyRefresh   string

	markRevoked, checkRevoked string
	// The JWT signing keys (version 3), see keys.go.
	insertKey, selectKeys, deleteKeys string
	// The registered clients (version 4), see clients.go.
	insertClient, selectClient, listClients, updateClient, deleteClient, deleteLapsedClient string
	// The single-use values (version 5), see once.go.
	deleteExpiredOnce, insertOnce, takeOnce, selectOnce string
	// RevokeSubject's statements, by what they filter on (subject,
	// client_id, both): the grant families to mark revoked, then the codes,
	// access and refresh tokens to delete.
	subjectFamilies, subjectCodes, subjectAccess, subjectRefresh string
	clientFamilies, clientCodes, clientAccess, clientRefresh     string
	bothFamilies, bothCodes, bothAccess, bothRefresh             string
	// The tokens without a subject (client_credentials) of a client, whose
	// subject is the client (stores.RevokedBySubject).
	serviceAccess, serviceRefresh string
}

// ownerStatements find and delete the codes and tokens of a resource owner
// and/or a client.
type ownerStatements struct {
	families, codes, access, refresh string
}

const (
	codeCols  = "client_id, subject, redirect_uri, scope, code_challenge, code_challenge_method, family, audience, jkt, oidc, issued_at, expires_at"
	tokenCols = "client_id, subject, scope, family, audience, jkt, oidc, issued_at, expires_at"
	expiredIs = "expires_at < {now}"
)

// DefaultLockTimeout is how long a Db2 statement waits for a row lock: the
// app's default store_timeout.
const DefaultLockTimeout = 2 * time.Second

// ConnOptions configure every connection of a database handle.
type ConnOptions struct {
	// LockTimeout bounds a Db2 statement's wait for a lock (SET CURRENT
	// LOCK TIMEOUT, in whole seconds rounded up); Db2's driver ignores
	// the context's deadline. Default: 2s. Other dialects cancel by the
	// context and ignore it.
	LockTimeout time.Duration
}

// Open checks the dialect's driver and returns a database handle for dsn,
// with the default connection options. It does not connect: database/sql
// connects on first use.
func Open(dialectName, dsn string) (*sql.DB, error) {
	return OpenWith(dialectName, dsn, ConnOptions{})
}

// OpenWith is Open with connection options.
func OpenWith(dialectName, dsn string, co ConnOptions) (*sql.DB, error) {
	d, err := lookupDialect(dialectName)
	if err != nil {
		return nil, err
	}
	if err := d.available(); err != nil {
		return nil, err
	}
	if d.prepareDSN != nil {
		if dsn, err = d.prepareDSN(dsn); err != nil {
			return nil, fmt.Errorf("dialect %s: invalid DSN: %w", d.name, err)
		}
	}
	probe, err := sql.Open(d.driver, dsn)
	if err != nil {
		return nil, err
	}
	drv := probe.Driver()
	_ = probe.Close()
	var c driver.Connector = dsnConnector{dsn: dsn, drv: drv}
	if dc, ok := drv.(driver.DriverContext); ok {
		if c, err = dc.OpenConnector(dsn); err != nil {
			return nil, fmt.Errorf("dialect %s: invalid DSN: %w", d.name, err)
		}
	}
	if co.LockTimeout <= 0 {
		co.LockTimeout = DefaultLockTimeout
	}
	if d.connInit != nil {
		c = initConnector{c, d.connInit(co)}
	}
	return sql.OpenDB(ctxConnector{c}), nil
}

// initConnector runs statements on every new connection, before
// database/sql hands it out; a connection they fail on is closed.
type initConnector struct {
	driver.Connector
	stmts []string
}

func (c initConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	for _, q := range c.stmts {
		if err := execConn(ctx, conn, q); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	return conn, nil
}

// execConn runs a statement without parameters on a driver connection.
func execConn(ctx context.Context, conn driver.Conn, q string) error {
	if x, ok := conn.(driver.ExecerContext); ok {
		_, err := x.ExecContext(ctx, q, nil)
		if !errors.Is(err, driver.ErrSkip) {
			return err
		}
	}
	st, err := conn.Prepare(q)
	if err != nil {
		return err
	}
	defer st.Close()
	if x, ok := st.(driver.StmtExecContext); ok {
		_, err = x.ExecContext(ctx, nil)
	} else {
		_, err = st.Exec(nil) //nolint:staticcheck // the driver offers nothing newer
	}
	return err
}

// ctxConnector makes dialing honour the context even where a driver does
// not (go-mssqldb waits for a silent server's prelogin answer for ever):
// the caller gets ctx.Err() at its deadline, and a connection that turns up
// later is closed.
type ctxConnector struct{ driver.Connector }

func (c ctxConnector) Connect(ctx context.Context) (driver.Conn, error) {
	type result struct {
		conn driver.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := c.Connector.Connect(ctx)
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.err == nil && r.conn != nil {
				_ = r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// dsnConnector is the connector of a driver without one.
type dsnConnector struct {
	dsn string
	drv driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.drv }

// NewEngine returns an engine over db, which must have been opened for
// the named dialect. It does not touch the database.
func NewEngine(db *sql.DB, dialectName string, opts Options) (*Engine, error) {
	d, err := lookupDialect(dialectName)
	if err != nil {
		return nil, err
	}
	if opts.TablePrefix == "" {
		opts.TablePrefix = DefaultTablePrefix
	}
	if !prefixPattern.MatchString(opts.TablePrefix) {
		return nil, fmt.Errorf("table prefix %q: want a letter then up to 29 letters, digits or underscores", opts.TablePrefix)
	}
	if opts.PurgeBatch < 0 {
		return nil, fmt.Errorf("purge batch %d is negative", opts.PurgeBatch)
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = defaultLease
	}
	if opts.Holder == "" {
		opts.Holder = newHolder()
	}
	e := &Engine{db: db, d: d, opts: opts, schemaWait: schemaWait}
	p := opts.TablePrefix
	e.tables = tables{
		version: p + "schema_version",
		codes:   p + "codes",
		access:  p + "access_tokens",
		refresh: p + "refresh_tokens",
		revoked: p + "revoked_families",
		lease:   p + "purge_lease",
		keys:    p + "signing_keys",
		clients: p + "clients",
		once:    p + "single_use",
	}
	e.q = buildStatements(d, e.tables, opts.LeaseDuration)
	return e, nil
}

func buildStatements(d *dialect, t tables, lease time.Duration) statements {
	r := d.rebind
	// c renders a statement whose affected-row count decides something.
	c := func(q string) string { return d.counted + d.rebind(q) }
	st := statements{
		version:     r("SELECT MAX(version) FROM " + t.version),
		leaseCount:  r("SELECT COUNT(*) FROM " + t.lease + " WHERE name = ?"),
		leaseInsert: r("INSERT INTO " + t.lease + " (name, holder, lease_until) VALUES (?, 'none', 0)"),
		// A lease is free when it ran out (its holder crashed or released
		// it) or when we hold it already; the duration is a literal
		// because typing a parameter in arithmetic differs per system.
		leaseAcquire: c(fmt.Sprintf("UPDATE %s SET holder = ?, lease_until = {now} + %d WHERE name = ? AND (lease_until < {now} OR holder = ?)",
			t.lease, lease.Milliseconds())),
		leaseRelease: r("UPDATE " + t.lease + " SET lease_until = 0 WHERE name = ? AND holder = ?"),

		insertCode:  r("INSERT INTO " + t.codes + " (code_key, " + codeCols + ", used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"),
		consumeCode: c("UPDATE " + t.codes + " SET used = 1 WHERE code_key = ? AND used = 0 AND expires_at > ?"),
		selectCode:  r("SELECT " + codeCols + ", used FROM " + t.codes + " WHERE code_key = ?"),

		insertAccess:   r("INSERT INTO " + t.access + " (token_key, " + tokenCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
		insertRefresh:  r("INSERT INTO " + t.refresh + " (token_key, " + tokenCols + ", used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"),
		lookupAccess:   r("SELECT " + tokenCols + " FROM " + t.access + " WHERE token_key = ? AND expires_at > ?"),
		lookupRefresh:  r("SELECT " + tokenCols + " FROM " + t.refresh + " WHERE token_key = ? AND expires_at > ? AND used = 0"),
		consumeRefresh: c("UPDATE " + t.refresh + " SET used = 1 WHERE token_key = ? AND used = 0 AND expires_at > ?"),
		selectRefresh:  r("SELECT " + tokenCols + ", used FROM " + t.refresh + " WHERE token_key = ?"),
		revokeAccess:   r("DELETE FROM " + t.access + " WHERE token_key = ?"),
		revokeRefresh:  r("DELETE FROM " + t.refresh + " WHERE token_key = ?"),
		familyAccess:   r("DELETE FROM " + t.access + " WHERE family = ?"),
		familyRefresh:  r("DELETE FROM " + t.refresh + " WHERE family = ?"),

		markRevoked:  r(d.markRevoked(t.revoked)),
		checkRevoked: r("SELECT COUNT(*) FROM " + t.revoked + " WHERE family = ? AND expires_at > ?"),

		insertKey:  r("INSERT INTO " + t.keys + " (key_id, sealed, created_at, expires_at) VALUES (?, ?, ?, ?)"),
		selectKeys: r("SELECT key_id, sealed, created_at, expires_at FROM " + t.keys + " WHERE expires_at > ?"),
		deleteKeys: r("DELETE FROM " + t.keys + " WHERE expires_at <= ?"),
	}
	clientStatements(&st, d, t)
	onceStatements(&st, d, t)
	st.subjectFamilies, st.subjectCodes, st.subjectAccess, st.subjectRefresh = ownerQueries(r, t, "subject = ?")
	st.clientFamilies, st.clientCodes, st.clientAccess, st.clientRefresh = ownerQueries(r, t, "client_id = ?")
	st.bothFamilies, st.bothCodes, st.bothAccess, st.bothRefresh = ownerQueries(r, t, "subject = ? AND client_id = ?")
	st.serviceAccess = r("DELETE FROM " + t.access + " WHERE subject IS NULL AND client_id = ?")
	st.serviceRefresh = r("DELETE FROM " + t.refresh + " WHERE subject IS NULL AND client_id = ?")
	return st
}

// ownerQueries builds RevokeSubject's statements for one filter; the
// subject and client_id indexes of the schema serve them.
func ownerQueries(r func(string) string, t tables, where string) (families, codes, access, refresh string) {
	return r("SELECT family FROM " + t.codes + " WHERE " + where + " AND family IS NOT NULL UNION " +
			"SELECT family FROM " + t.refresh + " WHERE " + where + " AND family IS NOT NULL"),
		r("DELETE FROM " + t.codes + " WHERE " + where),
		r("DELETE FROM " + t.access + " WHERE " + where),
		r("DELETE FROM " + t.refresh + " WHERE " + where)
}

func newHolder() string {
	host, _ := os.Hostname()
	if len(host) > 64 {
		host = host[:64]
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// DB returns the engine's database handle.
func (e *Engine) DB() *sql.DB { return e.db }

// Start checks that the database is reachable and its schema current,
// creating the schema first when configured to and it is missing.
func (e *Engine) Start(ctx context.Context) error {
	if err := e.db.PingContext(ctx); err != nil {
		return stores.Unavailable(fmt.Errorf("sql store (%s): connect: %w", e.d.name, err))
	}
	v, ok, err := e.schemaVersion(ctx)
	if err != nil && e.opts.CreateSchema {
		if aerr := e.applySchema(ctx); aerr != nil {
			var race *schemaRace
			if !errors.As(aerr, &race) {
				return fmt.Errorf("sql store (%s): create_schema: %w", e.d.name, aerr)
			}
			// Another gateway is creating the schema, or the first
			// statement failed for a reason of its own.
			if v, ok, err = e.awaitVersion(ctx); err != nil {
				return fmt.Errorf("sql store (%s): create_schema: %s", e.d.name, e.schemaFailed(0, race.stmt, race.err, "nothing was created"))
			}
		} else {
			v, ok, err = e.schemaVersion(ctx)
		}
	} else if err == nil && !ok {
		// The version row is written last: another gateway is still
		// creating the schema, or a run by hand stopped part way.
		v, ok, err = e.awaitVersion(ctx)
	}
	if err == nil && !ok {
		return fmt.Errorf("sql store (%s): schema half applied: %s has no version row after %v: drop the tables %s* and run %s%s by hand, or restart with create_schema after dropping them",
			e.d.name, e.tables.version, e.schemaWait, e.opts.TablePrefix, e.SchemaFile(), e.prefixNote())
	}
	if err != nil {
		if perr := e.db.PingContext(ctx); perr != nil {
			return stores.Unavailable(fmt.Errorf("sql store (%s): %w", e.d.name, perr))
		}
		return fmt.Errorf("sql store (%s): schema table %s not readable (%v): create the tables by running %s%s, or set create_schema",
			e.d.name, e.tables.version, err, e.SchemaFile(), e.prefixNote())
	}
	if v >= 1 && v < SchemaVersion && e.opts.CreateSchema {
		from := v
		if err := e.upgrade(ctx, from); err != nil {
			// Another gateway may have upgraded it meanwhile.
			if v, _, _ = e.schemaVersion(ctx); v != SchemaVersion {
				return fmt.Errorf("sql store (%s): create_schema: upgrading schema version %d to %d: %w", e.d.name, from, SchemaVersion, err)
			}
		} else {
			v = SchemaVersion
		}
	}
	switch {
	case v >= 1 && v < SchemaVersion:
		stmts, _ := e.upgradeStatements(v)
		return fmt.Errorf("sql store (%s): schema version %d in %s is older than %d: run\n%s;\nor set create_schema",
			e.d.name, v, e.tables.version, SchemaVersion, strings.Join(stmts, ";\n"))
	case v < SchemaVersion:
		return fmt.Errorf("sql store (%s): schema version %d in %s is older than %d: apply %s%s",
			e.d.name, v, e.tables.version, SchemaVersion, e.SchemaFile(), e.prefixNote())
	case v > SchemaVersion:
		return fmt.Errorf("sql store (%s): schema version %d in %s is newer than this build supports (%d): upgrade caddy-oauth2",
			e.d.name, v, e.tables.version, SchemaVersion)
	}
	return e.ensureLeaseRow(ctx)
}

// SchemaFile names the schema file for the engine's dialect.
func (e *Engine) SchemaFile() string { return "sql/" + e.d.name + "/oauth-server.sql" }

func (e *Engine) prefixNote() string {
	if e.opts.TablePrefix == DefaultTablePrefix {
		return ""
	}
	return fmt.Sprintf(" with every %s replaced by %s", DefaultTablePrefix, e.opts.TablePrefix)
}

// schemaVersion reads the schema version; ok is false when the version
// table exists without its row.
func (e *Engine) schemaVersion(ctx context.Context) (v int, ok bool, err error) {
	var n sql.NullInt64
	if err := e.db.QueryRowContext(ctx, e.q.version).Scan(&n); err != nil {
		return 0, false, err
	}
	return int(n.Int64), n.Valid, nil
}

// awaitVersion waits, at most schemaWait, for another gateway's
// create_schema to write the version row.
func (e *Engine) awaitVersion(ctx context.Context) (v int, ok bool, err error) {
	deadline := time.Now().Add(e.schemaWait)
	for {
		v, ok, err = e.schemaVersion(ctx)
		if ok || time.Now().After(deadline) {
			return v, ok, err
		}
		select {
		case <-ctx.Done():
			return v, ok, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Schema returns the bundled schema of a dialect with the given table
// prefix, as the statements to execute one by one.
func Schema(dialectName, prefix string) ([]string, error) {
	d, err := lookupDialect(dialectName)
	if err != nil {
		return nil, err
	}
	b, err := schemafiles.Files.ReadFile(d.name + "/oauth-server.sql")
	if err != nil {
		return nil, err
	}
	text := string(b)
	if prefix != DefaultTablePrefix {
		text = regexp.MustCompile(`\b`+DefaultTablePrefix).ReplaceAllLiteralString(text, prefix)
	}
	return splitStatements(text), nil
}

// splitStatements splits a schema file into statements: each ends with a
// semicolon at the end of a line; lines starting with -- are comments.
func splitStatements(text string) []string {
	var out []string
	var cur []string
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		if strings.HasSuffix(trimmed, ";") {
			cur = append(cur, strings.TrimRight(strings.TrimSuffix(trimmed, ";"), " "))
			out = append(out, strings.Join(cur, "\n"))
			cur = cur[:0]
			continue
		}
		cur = append(cur, line)
	}
	if len(cur) > 0 {
		out = append(out, strings.Join(cur, "\n"))
	}
	return out
}

// schemaRace is a create_schema that failed on creating the version table,
// the schema's first statement: another gateway got there first.
type schemaRace struct {
	stmt string
	err  error
}

func (r *schemaRace) Error() string { return r.err.Error() }
func (r *schemaRace) Unwrap() error { return r.err }

// applySchema runs the bundled schema. Where DDL is transactional it runs
// in one transaction; elsewhere a failure drops the tables this run
// created. Either way a failure leaves no half-applied schema behind.
func (e *Engine) applySchema(ctx context.Context) error {
	stmts, err := Schema(e.d.name, e.opts.TablePrefix)
	if err != nil {
		return err
	}
	if e.d.transactionalDDL {
		return e.applySchemaTx(ctx, stmts)
	}
	var created []string
	for i, s := range stmts {
		if _, err := e.db.ExecContext(ctx, s); err != nil {
			if i == 0 {
				return &schemaRace{s, err}
			}
			return e.schemaFailed(i, s, err, e.dropTables(ctx, created))
		}
		if t := createdTable(s); t != "" {
			created = append(created, t)
		}
	}
	return nil
}

// upgradeStatements returns the statements that take a version 1 to 4
// schema to the current version: from version 1 the revoked-families table
// and index and the subject and client_id indexes of version 2, from 1 or 2
// the signing-keys table of version 3, from 1 to 3 the audience columns of
// codes and tokens and the clients table of version 4, from any of them
// the jkt and oidc columns of codes and tokens and the single-use table of
// version 5, then the new version row.
func (e *Engine) upgradeStatements(from int) ([]string, error) {
	stmts, err := Schema(e.d.name, e.opts.TablePrefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range stmts {
		if from < 2 && (strings.Contains(s, e.tables.revoked) || ownerIndex(s)) || from < 3 && strings.Contains(s, e.tables.keys) {
			out = append(out, s)
		}
	}
	for _, up := range []struct {
		version int
		columns []string
		table   string
	}{
		{4, []string{"audience"}, e.tables.clients},
		{5, []string{"jkt", "oidc"}, e.tables.once},
	} {
		if from >= up.version {
			continue
		}
		for _, col := range up.columns {
			add, err := e.addColumns(stmts, col)
			if err != nil {
				return nil, err
			}
			out = append(out, add...)
		}
		for _, s := range stmts {
			if strings.Contains(s, up.table) {
				out = append(out, s)
			}
		}
	}
	return append(out, fmt.Sprintf("INSERT INTO %s (version) VALUES (%d)", e.tables.version, SchemaVersion)), nil
}

// addColumns returns the ALTER TABLE statements adding a column of the
// codes and token tables (version 4's audience, version 5's jkt and oidc),
// with the column's type as the schema file declares it.
func (e *Engine) addColumns(schema []string, column string) ([]string, error) {
	var out []string
	for _, table := range []string{e.tables.codes, e.tables.access, e.tables.refresh} {
		def := ""
		for _, s := range schema {
			if createdTable(s) != table {
				continue
			}
			for _, line := range strings.Split(s, "\n") {
				if l := strings.TrimSpace(line); strings.HasPrefix(l, column+" ") {
					def = strings.TrimSuffix(l, ",")
				}
			}
		}
		if def == "" {
			return nil, fmt.Errorf("%s declares no %s column in %s", e.SchemaFile(), column, table)
		}
		out = append(out, fmt.Sprintf(e.d.addColumn, table, def))
	}
	return out, nil
}

// ownerIndex reports a statement creating one of the subject and client_id
// indexes of version 2, which serve the admin revoke by user or client.
func ownerIndex(stmt string) bool {
	return strings.HasPrefix(stmt, "CREATE INDEX ") && (strings.Contains(stmt, "_sub_idx ") || strings.Contains(stmt, "_cli_idx "))
}

// upgrade applies upgradeStatements. DDL is not transactional everywhere:
// a table left by an upgrade that failed half way is kept.
func (e *Engine) upgrade(ctx context.Context, from int) error {
	stmts, err := e.upgradeStatements(from)
	if err != nil {
		return err
	}
	// An upgrade that stopped part way (or another gateway's, running
	// now) left the revoked-families table: keep it. A subject or client_id
	// index that cannot be created is taken as one created by hand already
	// (without it the admin revoke scans the table, nothing breaks).
	exists := func(table, column string) bool {
		var probe int64
		return e.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table+" WHERE "+column+" IS NULL AND expires_at < 0").Scan(&probe) == nil
	}
	resumed := exists(e.tables.revoked, "family")
	keysResumed := exists(e.tables.keys, "key_id")
	clientsResumed := exists(e.tables.clients, "client_id")
	onceResumed := exists(e.tables.once, "once_key")
	for _, s := range stmts {
		if resumed && strings.Contains(s, e.tables.revoked) || keysResumed && strings.Contains(s, e.tables.keys) ||
			clientsResumed && strings.Contains(s, e.tables.clients) || onceResumed && strings.Contains(s, e.tables.once) {
			continue
		}
		if table, column, ok := addsColumn(s); ok && exists(table, column) {
			continue
		}
		if _, err := e.db.ExecContext(ctx, s); err != nil && !ownerIndex(s) {
			return fmt.Errorf("%s: %w", firstLine(s), err)
		}
	}
	return nil
}

func (e *Engine) applySchemaTx(ctx context.Context, stmts []string) error {
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for i, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			if i == 0 {
				return &schemaRace{s, err}
			}
			return e.schemaFailed(i, s, err, "rolled back")
		}
	}
	if err := tx.Commit(); err != nil {
		// The commit of a concurrent identical schema can fail here.
		return &schemaRace{stmts[0], err}
	}
	return nil
}

// schemaFailed reports a failed statement of the schema file.
func (e *Engine) schemaFailed(i int, stmt string, err error, undone string) error {
	return fmt.Errorf("statement %d of %s%s failed (%s): %s: %w; fix the cause and restart, or run the file by hand",
		i+1, e.SchemaFile(), e.prefixNote(), undone, firstLine(stmt), err)
}

var addColumnPattern = regexp.MustCompile(`^ALTER TABLE (\w+) ADD (?:COLUMN )?\(?(\w+) `)

// addsColumn reports a statement of addColumns, its table and its column.
func addsColumn(stmt string) (table, column string, ok bool) {
	if m := addColumnPattern.FindStringSubmatch(stmt); m != nil {
		return m[1], m[2], true
	}
	return "", "", false
}

var createTablePattern = regexp.MustCompile(`(?i)^\s*CREATE\s+TABLE\s+(\w+)`)

// createdTable names the table a CREATE TABLE statement creates.
func createdTable(stmt string) string {
	if m := createTablePattern.FindStringSubmatch(stmt); m != nil {
		return m[1]
	}
	return ""
}

// dropTables drops the tables a failed create_schema created, newest
// first, and says what it did.
func (e *Engine) dropTables(ctx context.Context, created []string) string {
	if len(created) == 0 {
		return "nothing was created"
	}
	for i := len(created) - 1; i >= 0; i-- {
		if _, err := e.db.ExecContext(ctx, "DROP TABLE "+created[i]); err != nil {
			return fmt.Sprintf("dropping the tables it created failed at %s (%v): drop %s by hand",
				created[i], err, strings.Join(created[:i+1], ", "))
		}
	}
	return "dropped the tables it created: " + strings.Join(created, ", ")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (e *Engine) ensureLeaseRow(ctx context.Context) error {
	var n int64
	if err := e.db.QueryRowContext(ctx, e.q.leaseCount, leaseName).Scan(&n); err != nil {
		return stores.Unavailable(fmt.Errorf("sql store (%s): table %s: %w", e.d.name, e.tables.lease, err))
	}
	if n > 0 {
		return nil
	}
	if _, err := e.db.ExecContext(ctx, e.q.leaseInsert, leaseName); err != nil {
		// Lost a race with another gateway inserting it: fine if it is there.
		if e.db.QueryRowContext(ctx, e.q.leaseCount, leaseName).Scan(&n) != nil || n == 0 {
			return stores.Unavailable(fmt.Errorf("sql store (%s): table %s: %w", e.d.name, e.tables.lease, err))
		}
	}
	return nil
}

// fail wraps a backend failure so that callers answer 503.
func (e *Engine) fail(op string, err error) error {
	return stores.Unavailable(fmt.Errorf("sql store (%s): %s: %w", e.d.name, op, err))
}

// nullable stores empty strings as NULL: Oracle cannot tell them apart,
// so no system is allowed to.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// audience joins resource URIs for the audience column (NULL for none).
// RFC 8707 resource indicators are absolute URIs, which hold no spaces.
func audience(aud []string) (any, error) {
	if len(aud) == 0 {
		return nil, nil
	}
	for _, a := range aud {
		if a == "" || strings.IndexByte(a, ' ') >= 0 {
			return nil, errors.New("sql store: an audience entry is empty or holds a space")
		}
	}
	return strings.Join(aud, " "), nil
}

// splitAudience reads the audience column.
func splitAudience(s sql.NullString) []string {
	if !s.Valid || s.String == "" {
		return nil
	}
	return strings.Split(s.String, " ")
}

// oidcJSON encodes OpenID Connect state for the oidc column (NULL for
// none).
func oidcJSON(g *stores.OIDCGrant) (any, error) {
	if g == nil {
		return nil, nil
	}
	b, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("sql store: OIDC state: %w", err)
	}
	return string(b), nil
}

// readOIDC decodes the oidc column.
func (e *Engine) readOIDC(s sql.NullString) (*stores.OIDCGrant, error) {
	if !s.Valid || s.String == "" {
		return nil, nil
	}
	g := new(stores.OIDCGrant)
	if err := json.Unmarshal([]byte(s.String), g); err != nil {
		return nil, fmt.Errorf("oidc column is not a JSON object: %w", err)
	}
	return g, nil
}

func millis(t time.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func nowMillis() int64 { return time.Now().UnixMilli() }

// InsertCode stores a new code.
func (e *Engine) InsertCode(ctx context.Context, c *stores.Code) error {
	aud, err := audience(c.Audience)
	if err != nil {
		return err
	}
	oidc, err := oidcJSON(c.OIDC)
	if err != nil {
		return err
	}
	_, err = e.db.ExecContext(ctx, e.q.insertCode, c.Key, nullable(c.ClientID), nullable(c.Subject),
		nullable(c.RedirectURI), nullable(c.Scope), nullable(c.CodeChallenge), nullable(c.CodeChallengeMethod),
		nullable(c.Family), aud, nullable(c.JKT), oidc, millis(c.IssuedAt), millis(c.ExpiresAt))
	if err != nil {
		return e.fail("insert code", err)
	}
	return nil
}

// ConsumeCode marks the code used. The conditional UPDATE decides the one
// winner; a loser reads the row to tell a replay from an unknown code.
func (e *Engine) ConsumeCode(ctx context.Context, key string) (*stores.Code, error) {
	now := nowMillis()
	won, err := e.claim(ctx, e.q.consumeCode, key, now)
	if err != nil {
		return nil, e.fail("consume code", err)
	}
	c, used, err := e.selectCode(ctx, key)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, stores.ErrNotFound
		}
		return nil, e.fail("read code", err)
	}
	switch {
	case won:
		return c, nil
	case millis(c.ExpiresAt) <= now:
		return nil, stores.ErrNotFound
	case used:
		return c, stores.ErrConsumed
	}
	return nil, stores.ErrNotFound
}

// claim runs a conditional UPDATE and reports whether it changed the row.
// The key is the primary key, so any count above 1 comes from a trigger's
// own statements, which go-mssqldb adds in: it is still a win.
func (e *Engine) claim(ctx context.Context, stmt, key string, now int64) (bool, error) {
	res, err := e.db.ExecContext(ctx, stmt, key, now)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	return n >= 1, nil
}

func (e *Engine) selectCode(ctx context.Context, key string) (*stores.Code, bool, error) {
	var (
		client, subject, redirect, scope, challenge, method, family, aud, jkt, oidc sql.NullString
		issued, expires, used                                                       int64
	)
	err := e.db.QueryRowContext(ctx, e.q.selectCode, key).Scan(&client, &subject, &redirect, &scope,
		&challenge, &method, &family, &aud, &jkt, &oidc, &issued, &expires, &used)
	if err != nil {
		return nil, false, err
	}
	grant, err := e.readOIDC(oidc)
	if err != nil {
		return nil, false, err
	}
	return &stores.Code{
		Key:                 key,
		ClientID:            client.String,
		Subject:             subject.String,
		RedirectURI:         redirect.String,
		Scope:               scope.String,
		CodeChallenge:       challenge.String,
		CodeChallengeMethod: method.String,
		Family:              family.String,
		Audience:            splitAudience(aud),
		JKT:                 jkt.String,
		OIDC:                grant,
		IssuedAt:            fromMillis(issued),
		ExpiresAt:           fromMillis(expires),
	}, used != 0, nil
}

// PurgeExpiredCodes deletes expired codes in batches.
func (e *Engine) PurgeExpiredCodes(ctx context.Context, batch int) (int64, error) {
	return e.purge(ctx, batch, []purgeTarget{{e.tables.codes, "code_key", true}})
}

// InsertTokens stores tokens, in one transaction when there are several,
// and then checks their families for a revoked-family marker. RevokeFamily
// writes the marker before it deletes the family's tokens, each step
// committed in order, so one of the two always sees the other: either this
// check finds the marker (and the tokens are deleted again and refused), or
// the revocation's delete finds the tokens.
func (e *Engine) InsertTokens(ctx context.Context, tokens ...*stores.Token) error {
	for _, t := range tokens {
		if t.Kind != stores.AccessToken && t.Kind != stores.RefreshToken {
			return fmt.Errorf("sql store: token kind %d unknown", t.Kind)
		}
	}
	if err := e.insertTokens(ctx, tokens); err != nil {
		return err
	}
	now := nowMillis()
	var checked []string
	for _, t := range tokens {
		if t.Family == "" || slices.Contains(checked, t.Family) {
			continue
		}
		checked = append(checked, t.Family)
		var n int64
		if err := e.db.QueryRowContext(ctx, e.q.checkRevoked, t.Family, now).Scan(&n); err != nil {
			// Unchecked tokens must not be handed out: the caller answers
			// 503, and the raw values are never released.
			return e.fail("check revoked family", err)
		}
		if n > 0 {
			return e.refuse(ctx, tokens, t.Family)
		}
	}
	return nil
}

// refuse deletes the tokens of a revoked family just inserted and returns
// ErrRevoked.
func (e *Engine) refuse(ctx context.Context, tokens []*stores.Token, family string) error {
	for _, t := range tokens {
		if t.Family != family {
			continue
		}
		stmt := e.q.revokeAccess
		if t.Kind == stores.RefreshToken {
			stmt = e.q.revokeRefresh
		}
		// InnoDB may pick this delete as the victim of a deadlock with the
		// revocation's own delete of the family.
		if err := retryDeadlock(ctx, func() error {
			_, err := e.db.ExecContext(ctx, stmt, t.Key)
			return err
		}); err != nil {
			return e.fail("delete tokens of a revoked family", err)
		}
	}
	return stores.ErrRevoked
}

func (e *Engine) insertTokens(ctx context.Context, tokens []*stores.Token) error {
	if len(tokens) == 1 {
		if err := e.insertToken(ctx, e.db, tokens[0]); err != nil {
			return e.fail("insert token", err)
		}
		return nil
	}
	err := retryDeadlock(ctx, func() error {
		tx, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit
		for _, t := range tokens {
			if err := e.insertToken(ctx, tx, t); err != nil {
				return err
			}
		}
		return tx.Commit()
	})
	if err != nil {
		return e.fail("insert tokens", err)
	}
	return nil
}

// retryDeadlock runs f, a transaction, again when the database chose it as
// a deadlock victim and rolled it back: InnoDB's gap locks on the family
// indexes make an insert and a family revocation deadlock now and then.
func retryDeadlock(ctx context.Context, f func() error) error {
	// A busy server (CI under -race on two cores) can pick the same
	// transaction again, so it gets up to ten tries, with a growing,
	// jittered rest that keeps two victims from colliding in step.
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if err = f(); err == nil || !strings.Contains(strings.ToLower(err.Error()), "deadlock") || ctx.Err() != nil {
			return err
		}
		rest := time.Duration(min(attempt+1, 8)) * 5 * time.Millisecond
		time.Sleep(rest/2 + mrand.N(rest))
	}
	return err
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (e *Engine) insertToken(ctx context.Context, x execer, t *stores.Token) error {
	stmt := e.q.insertAccess
	if t.Kind == stores.RefreshToken {
		stmt = e.q.insertRefresh
	}
	aud, err := audience(t.Audience)
	if err != nil {
		return err
	}
	oidc, err := oidcJSON(t.OIDC)
	if err != nil {
		return err
	}
	_, err = x.ExecContext(ctx, stmt, t.Key, nullable(t.ClientID), nullable(t.Subject), nullable(t.Scope),
		nullable(t.Family), aud, nullable(t.JKT), oidc, millis(t.IssuedAt), millis(t.ExpiresAt))
	return err
}

// LookupToken returns a live token of the given kind.
func (e *Engine) LookupToken(ctx context.Context, kind stores.Kind, key string) (*stores.Token, error) {
	var stmt string
	switch kind {
	case stores.AccessToken:
		stmt = e.q.lookupAccess
	case stores.RefreshToken:
		stmt = e.q.lookupRefresh
	default:
		return nil, stores.ErrNotFound
	}
	var (
		client, subject, scope, family, aud, jkt, oidc sql.NullString
		issued, expires                                int64
	)
	err := e.db.QueryRowContext(ctx, stmt, key, nowMillis()).Scan(&client, &subject, &scope, &family, &aud, &jkt, &oidc, &issued, &expires)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, stores.ErrNotFound
		}
		return nil, e.fail("lookup token", err)
	}
	grant, err := e.readOIDC(oidc)
	if err != nil {
		return nil, e.fail("lookup token", err)
	}
	return &stores.Token{
		Key: key, Kind: kind,
		ClientID: client.String, Subject: subject.String, Scope: scope.String, Family: family.String,
		Audience: splitAudience(aud), JKT: jkt.String, OIDC: grant,
		IssuedAt: fromMillis(issued), ExpiresAt: fromMillis(expires),
	}, nil
}

// ConsumeRefreshToken rotates a refresh token: one conditional UPDATE
// decides the winner, as for codes.
func (e *Engine) ConsumeRefreshToken(ctx context.Context, key string) (*stores.Token, error) {
	now := nowMillis()
	won, err := e.claim(ctx, e.q.consumeRefresh, key, now)
	if err != nil {
		return nil, e.fail("consume refresh token", err)
	}
	var (
		client, subject, scope, family, aud, jkt, oidc sql.NullString
		issued, expires, used                          int64
	)
	err = e.db.QueryRowContext(ctx, e.q.selectRefresh, key).Scan(&client, &subject, &scope, &family, &aud, &jkt, &oidc, &issued, &expires, &used)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, stores.ErrNotFound
		}
		return nil, e.fail("read refresh token", err)
	}
	grant, err := e.readOIDC(oidc)
	if err != nil {
		return nil, e.fail("read refresh token", err)
	}
	t := &stores.Token{
		Key: key, Kind: stores.RefreshToken,
		ClientID: client.String, Subject: subject.String, Scope: scope.String, Family: family.String,
		Audience: splitAudience(aud), JKT: jkt.String, OIDC: grant,
		IssuedAt: fromMillis(issued), ExpiresAt: fromMillis(expires),
	}
	switch {
	case won:
		return t, nil
	case expires <= now:
		return nil, stores.ErrNotFound
	case used != 0:
		return t, stores.ErrConsumed
	}
	return nil, stores.ErrNotFound
}

// RevokeToken deletes one token; an unknown one is no error.
func (e *Engine) RevokeToken(ctx context.Context, kind stores.Kind, key string) error {
	var stmts []string
	switch kind {
	case stores.AccessToken:
		stmts = []string{e.q.revokeAccess}
	case stores.RefreshToken:
		stmts = []string{e.q.revokeRefresh}
	default:
		stmts = []string{e.q.revokeAccess, e.q.revokeRefresh}
	}
	for _, s := range stmts {
		if _, err := e.db.ExecContext(ctx, s, key); err != nil {
			return e.fail("revoke token", err)
		}
	}
	return nil
}

// RevokeFamily records the family as revoked until the given time (or a
// later one already recorded), committed first, and then deletes every
// access and refresh token of the family, consumed ones included, in one
// transaction. See InsertTokens for why this order is exact.
func (e *Engine) RevokeFamily(ctx context.Context, family string, until time.Time) error {
	if family == "" {
		return nil
	}
	if _, err := e.db.ExecContext(ctx, e.q.markRevoked, family, millis(until)); err != nil {
		// Two first revocations of one family may both try to insert: the
		// loser finds the row on a second try.
		if _, err = e.db.ExecContext(ctx, e.q.markRevoked, family, millis(until)); err != nil {
			return e.fail("mark family revoked", err)
		}
	}
	err := retryDeadlock(ctx, func() error {
		tx, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit
		for _, s := range []string{e.q.familyAccess, e.q.familyRefresh} {
			if _, err := tx.ExecContext(ctx, s, family); err != nil {
				return err
			}
		}
		return tx.Commit()
	})
	if err != nil {
		return e.fail("revoke family", err)
	}
	return nil
}

// PurgeExpiredTokens deletes expired access and refresh tokens in batches,
// and expired revoked-family markers and lapsed registered clients,
// uncounted.
func (e *Engine) PurgeExpiredTokens(ctx context.Context, batch int) (int64, error) {
	return e.purge(ctx, batch, []purgeTarget{
		{e.tables.access, "token_key", true},
		{e.tables.refresh, "token_key", true},
		{e.tables.revoked, "family", false},
		{e.tables.clients, "client_id", false},
	})
}

// Interface guards
var (
	_ stores.Store     = (*Engine)(nil)
	_ stores.Starter   = (*Engine)(nil)
	_ stores.SingleUse = (*Engine)(nil)
)
