// Package cassandra keeps codes and tokens in Apache Cassandra (module
// oauth2.stores.cassandra).
//
// Rows carry a TTL equal to their remaining lifetime, so Cassandra expires
// them itself and the purger has nothing to delete. Codes and refresh tokens
// are redeemed with lightweight transactions, so exactly one concurrent
// redemption wins whatever the read and write consistency levels.
package cassandra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/apache/cassandra-gocql-driver/v2/gocqlzap"
	"go.uber.org/zap"

	"github.com/tokengate/caddy-oauth2/stores"
)

// DefaultTimeout bounds connecting and each query when Config.Timeout is 0.
// It is above Cassandra's own default request timeouts (2 s for writes,
// 5 s for reads), as the driver advises.
const DefaultTimeout = 6 * time.Second

// maxTTL is the longest TTL Cassandra accepts (20 years).
const maxTTL = 20 * 365 * 24 * 3600

// retryConnectAfter is how long a failed session creation is remembered:
// during an outage callers fail at once instead of each waiting a timeout.
const retryConnectAfter = time.Second

// Config is what the engine needs; the Caddy module fills it in.
type Config struct {
	// Hosts are the contact points, host or host:port (port 9042 if none).
	Hosts []string
	// Keyspace holds the tables; it must exist.
	Keyspace string
	// Consistency levels for reads, writes and lightweight transactions.
	Consistency Consistencies
	// LocalDC, if set, routes queries to that data center's nodes first.
	LocalDC string
	// Username and Password authenticate when Username is set.
	Username, Password string
	// Timeout bounds connecting and each query; DefaultTimeout if 0.
	Timeout time.Duration
	// CreateSchema creates missing tables at Start.
	CreateSchema bool
	// Replication, with CreateSchema, creates a missing keyspace at Start
	// with this replication (see ReplicationMap). Without it a missing
	// keyspace is an error that names the statement to run.
	Replication []string
	// Logger receives the driver's logs; none if nil. See SetLogger.
	Logger *zap.Logger
	// QueryObserver and BatchObserver see every statement (tests, metrics).
	QueryObserver gocql.QueryObserver
	BatchObserver gocql.BatchObserver
}

var keyspaceName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,47}$`)

// CheckKeyspace reports whether ks is a valid unquoted keyspace name.
func CheckKeyspace(ks string) error {
	if !keyspaceName.MatchString(ks) {
		return fmt.Errorf("keyspace %q: want a letter then up to 47 letters, digits or underscores", ks)
	}
	return nil
}

// Engine is a stores.Store on one Cassandra session. It connects lazily, on
// Start or on first use, and retries connecting on later calls if that
// failed; once connected the driver reconnects to nodes on its own.
type Engine struct {
	cfg    Config
	commit gocql.Consistency
	q      statements
	log    driverLogger

	mu         sync.Mutex
	session    *gocql.Session
	connecting chan struct{} // closed when the current attempt ends
	lastErr    error         // of the last failed attempt
	lastTry    time.Time
	closed     bool
}

type statements struct {
	insertCode, selectCode                  string
	insertToken, insertFamily, selectToken  string
	deleteToken, selectFamily, deleteFamily string
	consume, selectConsumed                 string
	markRevoked, selectRevoked              string
	putOnce, replaceOnce, takeOnce, getOnce string
}

// NewEngine returns an engine for cfg without connecting.
func NewEngine(cfg Config) (*Engine, error) {
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("no Cassandra hosts")
	}
	if err := CheckKeyspace(cfg.Keyspace); err != nil {
		return nil, err
	}
	if c := cfg.Consistency; c.Read == gocql.Any || c.Write == gocql.Serial || c.Write == gocql.LocalSerial ||
		c.Serial != gocql.Serial && c.Serial != gocql.LocalSerial {
		return nil, fmt.Errorf("invalid consistency levels %s/%s/%s; use ParseConsistencies", c.Read, c.Write, c.Serial)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	ks := strings.ToLower(cfg.Keyspace)
	cfg.Keyspace = ks
	e := &Engine{
		cfg:    cfg,
		commit: cfg.Consistency.Commit(),
		q: statements{
			insertCode: "INSERT INTO " + ks + ".codes (key, client_id, subject, redirect_uri, scope, code_challenge, " +
				"code_challenge_method, family, audience, jkt, oidc, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
			selectCode: "SELECT client_id, subject, redirect_uri, scope, code_challenge, code_challenge_method, family, " +
				"audience, jkt, oidc, issued_at, expires_at FROM " + ks + ".codes WHERE key = ?",
			insertToken: "INSERT INTO " + ks + ".tokens (kind, key, client_id, subject, scope, family, audience, jkt, oidc, issued_at, expires_at) " +
				"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
			insertFamily: "INSERT INTO " + ks + ".tokens_by_family (family, kind, key) VALUES (?, ?, ?) USING TTL ?",
			selectToken: "SELECT client_id, subject, scope, family, audience, jkt, oidc, issued_at, expires_at FROM " + ks +
				".tokens WHERE kind = ? AND key = ?",
			deleteToken:    "DELETE FROM " + ks + ".tokens WHERE kind = ? AND key = ?",
			selectFamily:   "SELECT kind, key FROM " + ks + ".tokens_by_family WHERE family = ?",
			deleteFamily:   "DELETE FROM " + ks + ".tokens_by_family WHERE family = ? AND kind = ? AND key = ?",
			consume:        "INSERT INTO " + ks + ".consumed (kind, key, consumer, consumed_at) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
			selectConsumed: "SELECT consumer FROM " + ks + ".consumed WHERE kind = ? AND key = ?",
			markRevoked:    "INSERT INTO " + ks + ".revoked_families (family, expires_at) VALUES (?, ?) USING TTL ?",
			selectRevoked:  "SELECT expires_at FROM " + ks + ".revoked_families WHERE family = ? AND expires_at > ? LIMIT 1",
			putOnce:        "INSERT INTO " + ks + ".single_use (key, value, used, expires_at) VALUES (?, ?, false, ?) IF NOT EXISTS USING TTL ?",
			replaceOnce: "UPDATE " + ks + ".single_use USING TTL ? SET value = ?, used = false, expires_at = ? " +
				"WHERE key = ? IF expires_at = ?",
			takeOnce: "UPDATE " + ks + ".single_use USING TTL ? SET used = true WHERE key = ? IF used = false AND expires_at = ?",
			getOnce:  "SELECT value, used, expires_at FROM " + ks + ".single_use WHERE key = ?",
		},
	}
	e.SetLogger(cfg.Logger)
	return e, nil
}

// SetLogger replaces the logger the driver logs to: after a config reload
// the previous config's logger may be closed.
func (e *Engine) SetLogger(l *zap.Logger) {
	if l == nil {
		l = zap.NewNop()
	}
	e.log.l.Store(l.Named("gocql"))
}

// driverLogger is a gocql.StructuredLogger whose zap logger can change.
type driverLogger struct{ l atomic.Pointer[zap.Logger] }

func (d *driverLogger) get() gocql.StructuredLogger { return gocqlzap.NewUnnamedZapLogger(d.l.Load()) }

func (d *driverLogger) Error(msg string, f ...gocql.LogField)   { d.get().Error(msg, f...) }
func (d *driverLogger) Warning(msg string, f ...gocql.LogField) { d.get().Warning(msg, f...) }
func (d *driverLogger) Info(msg string, f ...gocql.LogField)    { d.get().Info(msg, f...) }
func (d *driverLogger) Debug(msg string, f ...gocql.LogField)   { d.get().Debug(msg, f...) }

// Config returns the engine's configuration, defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// Close closes the session, now or as soon as a pending attempt ends.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	if e.session != nil {
		e.session.Close()
		e.session = nil
	}
}

// Destruct closes the engine when the last module using it is cleaned up
// (caddy.Destructor).
func (e *Engine) Destruct() error {
	e.Close()
	return nil
}

// sess returns the session, creating it if needed. Concurrent callers
// share one attempt; each waits no longer than its ctx.
func (e *Engine) sess(ctx context.Context) (*gocql.Session, error) {
	for {
		e.mu.Lock()
		switch {
		case e.closed:
			e.mu.Unlock()
			return nil, stores.Unavailable(errors.New("cassandra store closed"))
		case e.session != nil:
			s := e.session
			e.mu.Unlock()
			return s, nil
		case e.connecting == nil && e.lastErr != nil && time.Since(e.lastTry) < retryConnectAfter:
			err := e.lastErr
			e.mu.Unlock()
			return nil, stores.Unavailable(err)
		case e.connecting == nil:
			e.connecting = make(chan struct{})
			go e.connect(e.connecting)
		}
		ch := e.connecting
		e.mu.Unlock()
		select {
		case <-ch:
			e.mu.Lock()
			s, err := e.session, e.lastErr
			e.mu.Unlock()
			if s != nil {
				return s, nil
			}
			if err != nil {
				return nil, stores.Unavailable(err)
			}
			// Closed meanwhile: the loop reports it.
		case <-ctx.Done():
			return nil, stores.Unavailable(fmt.Errorf("connecting to Cassandra: %w", ctx.Err()))
		}
	}
}

// connect creates the session; it ends within about cfg.Timeout per host,
// as the driver bounds every dial and handshake by ConnectTimeout.
func (e *Engine) connect(done chan struct{}) {
	s, err := e.cluster().CreateSession()
	if err != nil {
		err = fmt.Errorf("connecting to Cassandra %s: %w", strings.Join(e.cfg.Hosts, ","), err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	defer close(done)
	e.connecting = nil
	e.lastTry = time.Now()
	e.lastErr = err
	if err != nil {
		return
	}
	if e.closed {
		s.Close()
		return
	}
	e.session = s
}

func (e *Engine) cluster() *gocql.ClusterConfig {
	c := gocql.NewCluster(e.cfg.Hosts...)
	c.Timeout = e.cfg.Timeout
	c.ConnectTimeout = e.cfg.Timeout
	c.Consistency = e.cfg.Consistency.Read
	c.SerialConsistency = e.cfg.Consistency.Serial
	c.Logger = &e.log
	// Try nodes marked down every few seconds rather than every minute, so
	// the store recovers quickly from an outage of the whole cluster.
	c.ReconnectInterval = 5 * time.Second
	var fallback gocql.HostSelectionPolicy
	if e.cfg.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(e.cfg.LocalDC)
	} else {
		fallback = gocql.RoundRobinHostPolicy()
	}
	c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback, gocql.ShuffleReplicas())
	if e.cfg.Username != "" {
		c.Authenticator = gocql.PasswordAuthenticator{Username: e.cfg.Username, Password: e.cfg.Password}
	}
	c.QueryObserver = e.cfg.QueryObserver
	c.BatchObserver = e.cfg.BatchObserver
	return c
}

// StartInfo is what Start learnt about the keyspace.
type StartInfo struct {
	// Replicas is the replication factor of the keyspace (in the local
	// data center if one is set and known, else the largest one).
	Replicas int
	// Replication is the keyspace's replication map.
	Replication map[string]string
}

// Start connects, checks that the keyspace exists and creates or checks
// the tables.
func (e *Engine) Start(ctx context.Context) (StartInfo, error) {
	var info StartInfo
	s, err := e.sess(ctx)
	if err != nil {
		return info, err
	}
	err = s.Query("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?", e.cfg.Keyspace).
		Consistency(gocql.One).ScanContext(ctx, &info.Replication)
	if errors.Is(err, gocql.ErrNotFound) {
		if !e.cfg.CreateSchema || len(e.cfg.Replication) == 0 {
			return info, stores.Unavailable(fmt.Errorf("keyspace %q does not exist; create it with %s; "+
				"or set create_schema and replication to let the store create it",
				e.cfg.Keyspace, createKeyspaceStatement(e.cfg.Keyspace, "{'class': 'NetworkTopologyStrategy', '<data center>': 3}")))
		}
		repl, rerr := ReplicationMap(e.cfg.Replication)
		if rerr != nil {
			return info, rerr
		}
		if err := execDDL(ctx, s, createKeyspaceStatement(e.cfg.Keyspace, repl)); err != nil {
			return info, stores.Unavailable(fmt.Errorf("creating keyspace %q: %w", e.cfg.Keyspace, err))
		}
		err = s.Query("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?", e.cfg.Keyspace).
			Consistency(gocql.One).ScanContext(ctx, &info.Replication)
	}
	if err != nil {
		return info, stores.Unavailable(fmt.Errorf("reading keyspace %q: %w", e.cfg.Keyspace, err))
	}
	info.Replicas = replicationFactor(info.Replication, e.cfg.LocalDC)

	if e.cfg.CreateSchema {
		stmts := schemaStatements(e.cfg.Keyspace)
		var release string
		if err := s.Query("SELECT release_version FROM system.local").Consistency(gocql.One).ScanContext(ctx, &release); err != nil {
			return info, stores.Unavailable(fmt.Errorf("reading the Cassandra version: %w", err))
		}
		if major, _, _ := strings.Cut(release, "."); major < "5" && len(major) == 1 {
			stmts = legacyIndexes(stmts)
		}
		for _, stmt := range stmts {
			if err := execDDL(ctx, s, stmt); err != nil {
				return info, stores.Unavailable(fmt.Errorf("creating schema: %w", err))
			}
		}
		missing, err := e.missingColumns(ctx, s)
		if err != nil {
			return info, err
		}
		for _, stmt := range missing {
			if err := execDDL(ctx, s, stmt); err != nil && !strings.Contains(err.Error(), "already exist") {
				return info, stores.Unavailable(fmt.Errorf("upgrading schema: %w", err))
			}
		}
		return info, nil
	}
	have := map[string]bool{}
	iter := s.Query("SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?", e.cfg.Keyspace).
		Consistency(gocql.One).IterContext(ctx)
	var name string
	for iter.Scan(&name) {
		have[name] = true
	}
	if err := iter.Close(); err != nil {
		return info, stores.Unavailable(fmt.Errorf("reading tables of keyspace %q: %w", e.cfg.Keyspace, err))
	}
	var missing []string
	for _, t := range schemaTables {
		if !have[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return info, stores.Unavailable(fmt.Errorf("keyspace %q lacks tables %s; load sql/cassandra/oauth-server.cql or set create_schema",
			e.cfg.Keyspace, strings.Join(missing, ", ")))
	}
	alter, err := e.missingColumns(ctx, s)
	if err != nil {
		return info, err
	}
	if len(alter) > 0 {
		return info, stores.Unavailable(fmt.Errorf("keyspace %q predates caddy-oauth2's schema version 5: run %s; or set create_schema",
			e.cfg.Keyspace, strings.Join(alter, "; ")))
	}
	return info, nil
}

// missingColumns returns the ALTER TABLE statements adding the columns of
// addedColumns that the keyspace's tables lack.
func (e *Engine) missingColumns(ctx context.Context, s *gocql.Session) ([]string, error) {
	var out []string
	for _, c := range addedColumns {
		var name string
		err := s.Query("SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
			e.cfg.Keyspace, c.table, c.column).Consistency(gocql.One).ScanContext(ctx, &name)
		switch {
		case errors.Is(err, gocql.ErrNotFound):
			out = append(out, "ALTER TABLE "+e.cfg.Keyspace+"."+c.table+" ADD "+c.column+" "+c.typ)
		case err != nil:
			return nil, stores.Unavailable(fmt.Errorf("reading the columns of %s.%s: %w", e.cfg.Keyspace, c.table, err))
		}
	}
	return out, nil
}

// execDDL runs one schema statement and waits until every node agrees on
// the schema. On a cluster, the next statement may reach a coordinator that
// has not yet seen the table the previous one created ("Table 'codes'
// doesn't exist" for its index), so such errors are retried after waiting
// for agreement again, until ctx ends.
func execDDL(ctx context.Context, s *gocql.Session, stmt string) error {
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		err := s.Query(stmt).Consistency(gocql.One).ExecContext(ctx)
		if err == nil {
			return s.AwaitSchemaAgreement(ctx)
		}
		msg := err.Error()
		if !strings.Contains(msg, "doesn't exist") && !strings.Contains(msg, "unconfigured table") &&
			!strings.Contains(msg, "does not exist") {
			return err
		}
		if aerr := s.AwaitSchemaAgreement(ctx); aerr != nil && ctx.Err() == nil {
			return fmt.Errorf("%w (and the nodes do not agree on the schema: %v)", err, aerr)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// replicationFactor reads a keyspace replication map.
func replicationFactor(repl map[string]string, localDC string) int {
	if strings.HasSuffix(repl["class"], "SimpleStrategy") {
		n, _ := strconv.Atoi(repl["replication_factor"])
		return n
	}
	if n, err := strconv.Atoi(repl[localDC]); localDC != "" && err == nil {
		return n
	}
	most := 0
	for k, v := range repl {
		if n, err := strconv.Atoi(v); err == nil && k != "class" && n > most {
			most = n
		}
	}
	return most
}

// ttl is the TTL, in whole seconds rounded up, of a record expiring at exp;
// false if it has expired.
func ttl(exp time.Time) (int, bool) {
	d := time.Until(exp)
	if exp.IsZero() || d <= 0 {
		return 0, false
	}
	s := (d + time.Second - 1) / time.Second
	if s > maxTTL {
		s = maxTTL
	}
	return int(s), true
}

// joinAudience joins resource URIs for the audience column; "" for none,
// not null, which would write a tombstone.
func joinAudience(aud []string) (string, error) {
	for _, a := range aud {
		if a == "" || strings.IndexByte(a, ' ') >= 0 {
			return "", errors.New("cassandra store: an audience entry is empty or holds a space")
		}
	}
	return strings.Join(aud, " "), nil
}

// oidcJSON encodes OpenID Connect state for the oidc column; "" for none,
// not null, which would write a tombstone.
func oidcJSON(g *stores.OIDCGrant) (string, error) {
	if g == nil {
		return "", nil
	}
	b, err := json.Marshal(g)
	if err != nil {
		return "", fmt.Errorf("cassandra store: OIDC state: %w", err)
	}
	return string(b), nil
}

// readOIDC decodes the oidc column.
func readOIDC(s string) (*stores.OIDCGrant, error) {
	if s == "" {
		return nil, nil
	}
	g := new(stores.OIDCGrant)
	if err := json.Unmarshal([]byte(s), g); err != nil {
		return nil, stores.Unavailable(fmt.Errorf("cassandra store: oidc column is not a JSON object: %w", err))
	}
	return g, nil
}

func splitAudience(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

// live reports whether a record read back is still valid. Cassandra's TTL
// has a one-second granularity, and a row whose cells expired unevenly may
// come back without expires_at: both count as expired.
func live(exp time.Time) bool { return !exp.IsZero() && time.Now().Before(exp) }

// fail maps a driver error to the store's errors.
func fail(err error) error {
	if errors.Is(err, gocql.ErrNotFound) {
		return stores.ErrNotFound
	}
	return stores.Unavailable(err)
}

// consumed-table kinds.
const (
	consumedCode    = "code"
	consumedRefresh = "refresh_token"
)

// InsertCode stores c with a TTL of its remaining lifetime; an already
// expired code is not written at all.
func (e *Engine) InsertCode(ctx context.Context, c *stores.Code) error {
	secs, ok := ttl(c.ExpiresAt)
	if !ok {
		return nil
	}
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	aud, err := joinAudience(c.Audience)
	if err != nil {
		return err
	}
	oidc, err := oidcJSON(c.OIDC)
	if err != nil {
		return err
	}
	err = s.Query(e.q.insertCode, c.Key, c.ClientID, c.Subject, c.RedirectURI, c.Scope, c.CodeChallenge,
		c.CodeChallengeMethod, c.Family, aud, c.JKT, oidc, c.IssuedAt, c.ExpiresAt, secs).
		Consistency(e.cfg.Consistency.Write).Idempotent(true).ExecContext(ctx)
	return stores.Unavailable(err)
}

// ConsumeCode reads the code, then redeems it with a lightweight
// transaction: RFC 6749 §4.1.2, a code is used once.
func (e *Engine) ConsumeCode(ctx context.Context, key string) (*stores.Code, error) {
	s, err := e.sess(ctx)
	if err != nil {
		return nil, err
	}
	c := &stores.Code{Key: key}
	var aud, oidc string
	err = s.Query(e.q.selectCode, key).Consistency(e.cfg.Consistency.Read).Idempotent(true).
		ScanContext(ctx, &c.ClientID, &c.Subject, &c.RedirectURI, &c.Scope, &c.CodeChallenge,
			&c.CodeChallengeMethod, &c.Family, &aud, &c.JKT, &oidc, &c.IssuedAt, &c.ExpiresAt)
	if err != nil {
		return nil, fail(err)
	}
	c.Audience = splitAudience(aud)
	if c.OIDC, err = readOIDC(oidc); err != nil {
		return nil, err
	}
	if !live(c.ExpiresAt) {
		return nil, stores.ErrNotFound
	}
	won, err := e.consume(ctx, s, consumedCode, key, c.ExpiresAt)
	if err != nil {
		return nil, err
	}
	if !won {
		return c, stores.ErrConsumed
	}
	return c, nil
}

// consume records that key was redeemed and reports whether this call did
// it. The INSERT ... IF NOT EXISTS is a Paxos round at the serial
// consistency, so exactly one caller wins even at ONE/ANY. A separate
// table only ever written this way keeps Paxos timestamps away from plain
// writes (mixing them lets a re-proposed Paxos value overwrite a newer
// plain write).
//
// A timed-out transaction may or may not have applied. Each attempt carries
// a random consumer id; after an error a serial read (which completes any
// Paxos round in flight) tells whether ours won, another did, or none did
// (then we try again).
func (e *Engine) consume(ctx context.Context, s *gocql.Session, kind, key string, exp time.Time) (bool, error) {
	me, err := gocql.RandomUUID()
	if err != nil {
		return false, stores.Unavailable(err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		secs, ok := ttl(exp)
		if !ok {
			return false, stores.ErrNotFound
		}
		prev := map[string]any{}
		applied, err := s.Query(e.q.consume, kind, key, me, time.Now(), secs).
			Consistency(e.commit).SerialConsistency(e.cfg.Consistency.Serial).
			MapScanCASContext(ctx, prev)
		if err == nil {
			return applied, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
		var who gocql.UUID
		err = s.Query(e.q.selectConsumed, kind, key).Consistency(e.cfg.Consistency.Serial).ScanContext(ctx, &who)
		switch {
		case err == nil:
			return who == me, nil
		case errors.Is(err, gocql.ErrNotFound):
			continue // nobody's transaction applied: try again
		default:
			return false, stores.Unavailable(fmt.Errorf("redeeming: %w; then reading the outcome: %w", lastErr, err))
		}
	}
	return false, stores.Unavailable(fmt.Errorf("redeeming: %w", lastErr))
}

// PurgeExpiredCodes has nothing to do: codes and their consumed markers
// carry TTLs, so Cassandra drops them itself (and reclaims the space at
// compaction once gc_grace_seconds have passed). It returns 0.
func (e *Engine) PurgeExpiredCodes(ctx context.Context, batch int) (int64, error) { return 0, nil }

// PurgeExpiredTokens has nothing to do, for the same reason: tokens, their
// family index rows and consumed markers all expire by TTL. It returns 0.
func (e *Engine) PurgeExpiredTokens(ctx context.Context, batch int) (int64, error) { return 0, nil }

// tokenBatch bounds the statements per batch, below Cassandra's default
// batch size warning and unlogged multi-partition thresholds.
const tokenBatch = 10

// InsertTokens writes the family index rows first and then the tokens, each
// with a TTL of its remaining lifetime: a token is never stored without the
// index row RevokeFamily finds it by. Expired tokens are skipped. Then it
// reads the families' revoked markers: RevokeFamily writes its marker
// before it reads the index, so either this read sees the marker (the
// tokens are deleted again and refused with ErrRevoked) or the revocation
// sees the index rows. That holds when the write and read consistency
// levels overlap (R + W > replicas), as revocation itself needs.
func (e *Engine) InsertTokens(ctx context.Context, tokens ...*stores.Token) error {
	s, err := e.insertTokens(ctx, tokens)
	if err != nil || s == nil {
		return err
	}
	now := time.Now()
	var checked []string
	for _, t := range tokens {
		if t.Family == "" || slices.Contains(checked, t.Family) {
			continue
		}
		checked = append(checked, t.Family)
		var until time.Time
		err := s.Query(e.q.selectRevoked, t.Family, now).Consistency(e.cfg.Consistency.Read).Idempotent(true).
			ScanContext(ctx, &until)
		switch {
		case errors.Is(err, gocql.ErrNotFound):
			continue
		case err != nil:
			// Unchecked tokens are not handed out: the caller answers 503.
			return stores.Unavailable(err)
		}
		b := s.Batch(gocql.UnloggedBatch).Consistency(e.cfg.Consistency.Write)
		for _, d := range tokens {
			if d.Family == t.Family {
				b.Query(e.q.deleteToken, d.Kind.String(), d.Key)
			}
		}
		if err := b.ExecContext(ctx); err != nil {
			return stores.Unavailable(err)
		}
		return stores.ErrRevoked
	}
	return nil
}

// insertTokens writes the index rows and tokens; it returns a nil session
// when there was nothing to write.
func (e *Engine) insertTokens(ctx context.Context, tokens []*stores.Token) (*gocql.Session, error) {
	type row struct {
		t    *stores.Token
		secs int
	}
	var rows []row
	byFamily := map[string][]row{}
	var families []string
	auds := make(map[*stores.Token]string, len(tokens))
	oidcs := make(map[*stores.Token]string, len(tokens))
	for _, t := range tokens {
		aud, err := joinAudience(t.Audience)
		if err != nil {
			return nil, err
		}
		auds[t] = aud
		if oidcs[t], err = oidcJSON(t.OIDC); err != nil {
			return nil, err
		}
		secs, ok := ttl(t.ExpiresAt)
		if !ok {
			continue
		}
		r := row{t, secs}
		rows = append(rows, r)
		if t.Family == "" {
			continue // Cassandra refuses an empty partition key; nothing to revoke by.
		}
		if _, seen := byFamily[t.Family]; !seen {
			families = append(families, t.Family)
		}
		byFamily[t.Family] = append(byFamily[t.Family], r)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	s, err := e.sess(ctx)
	if err != nil {
		return nil, err
	}
	// One family is one partition: its batch is applied as one mutation.
	for _, fam := range families {
		b := s.Batch(gocql.UnloggedBatch).Consistency(e.cfg.Consistency.Write)
		for _, r := range byFamily[fam] {
			b.Query(e.q.insertFamily, fam, r.t.Kind.String(), r.t.Key, r.secs)
		}
		if err := b.ExecContext(ctx); err != nil {
			return nil, stores.Unavailable(err)
		}
	}
	for len(rows) > 0 {
		n := min(len(rows), tokenBatch)
		b := s.Batch(gocql.UnloggedBatch).Consistency(e.cfg.Consistency.Write)
		for _, r := range rows[:n] {
			t := r.t
			b.Query(e.q.insertToken, t.Kind.String(), t.Key, t.ClientID, t.Subject, t.Scope, t.Family, auds[t], t.JKT, oidcs[t],
				t.IssuedAt, t.ExpiresAt, r.secs)
		}
		if err := b.ExecContext(ctx); err != nil {
			return nil, stores.Unavailable(err)
		}
		rows = rows[n:]
	}
	return s, nil
}

// readToken reads a token of the given kind, live or not.
func (e *Engine) readToken(ctx context.Context, s *gocql.Session, kind stores.Kind, key string) (*stores.Token, error) {
	t := &stores.Token{Key: key, Kind: kind}
	var aud, oidc string
	err := s.Query(e.q.selectToken, kind.String(), key).Consistency(e.cfg.Consistency.Read).Idempotent(true).
		ScanContext(ctx, &t.ClientID, &t.Subject, &t.Scope, &t.Family, &aud, &t.JKT, &oidc, &t.IssuedAt, &t.ExpiresAt)
	if err != nil {
		return nil, fail(err)
	}
	t.Audience = splitAudience(aud)
	if t.OIDC, err = readOIDC(oidc); err != nil {
		return nil, err
	}
	if !live(t.ExpiresAt) {
		return nil, stores.ErrNotFound
	}
	return t, nil
}

// LookupToken returns a live token; a rotated refresh token counts as gone.
func (e *Engine) LookupToken(ctx context.Context, kind stores.Kind, key string) (*stores.Token, error) {
	if kind != stores.AccessToken && kind != stores.RefreshToken {
		return nil, stores.ErrNotFound
	}
	s, err := e.sess(ctx)
	if err != nil {
		return nil, err
	}
	t, err := e.readToken(ctx, s, kind, key)
	if err != nil || kind != stores.RefreshToken {
		return t, err
	}
	var who gocql.UUID
	err = s.Query(e.q.selectConsumed, consumedRefresh, key).Consistency(e.cfg.Consistency.Read).Idempotent(true).
		ScanContext(ctx, &who)
	switch {
	case err == nil:
		return nil, stores.ErrNotFound // rotated
	case errors.Is(err, gocql.ErrNotFound):
		return t, nil
	default:
		return nil, stores.Unavailable(err)
	}
}

// ConsumeRefreshToken rotates a refresh token with a lightweight
// transaction (RFC 6749 §10.4: a reused refresh token reveals a leak; the
// caller revokes the family). The consumed marker outlives the rotation
// until the token expires, so a replay keeps answering ErrConsumed.
func (e *Engine) ConsumeRefreshToken(ctx context.Context, key string) (*stores.Token, error) {
	s, err := e.sess(ctx)
	if err != nil {
		return nil, err
	}
	t, err := e.readToken(ctx, s, stores.RefreshToken, key)
	if err != nil {
		return nil, err
	}
	won, err := e.consume(ctx, s, consumedRefresh, key, t.ExpiresAt)
	if err != nil {
		return nil, err
	}
	if !won {
		return t, stores.ErrConsumed
	}
	return t, nil
}

// RevokeToken deletes one token; unknown tokens are no error (RFC 7009
// §2.2). Its family index row stays until its TTL and is harmless.
func (e *Engine) RevokeToken(ctx context.Context, kind stores.Kind, key string) error {
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	return stores.Unavailable(s.Query(e.q.deleteToken, kind.String(), key).
		Consistency(e.cfg.Consistency.Write).Idempotent(true).ExecContext(ctx))
}

// RevokeFamily first records the family as revoked until the given time
// (a row of its own with that TTL, so a shorter revocation never shortens a
// longer one; see InsertTokens for why it comes first), then reads the
// family's index partition, deletes every token it names (consumed refresh
// tokens included: once their row is gone they read as not found), then
// the index rows it read. It deletes those rows one by one rather than the
// whole partition, so a token indexed concurrently stays revocable.
func (e *Engine) RevokeFamily(ctx context.Context, family string, until time.Time) error {
	if family == "" {
		return nil
	}
	s, err := e.sess(ctx)
	if err != nil {
		return err
	}
	if secs, ok := ttl(until); ok {
		err := s.Query(e.q.markRevoked, family, until, secs).Consistency(e.cfg.Consistency.Write).
			Idempotent(true).ExecContext(ctx)
		if err != nil {
			return stores.Unavailable(err)
		}
	}
	type ref struct{ kind, key string }
	var refs []ref
	iter := s.Query(e.q.selectFamily, family).Consistency(e.cfg.Consistency.Read).Idempotent(true).
		PageSize(1000).IterContext(ctx)
	var r ref
	for iter.Scan(&r.kind, &r.key) {
		refs = append(refs, r)
	}
	if err := iter.Close(); err != nil {
		return stores.Unavailable(err)
	}
	for i := 0; i < len(refs); i += tokenBatch {
		b := s.Batch(gocql.UnloggedBatch).Consistency(e.cfg.Consistency.Write)
		for _, r := range refs[i:min(i+tokenBatch, len(refs))] {
			b.Query(e.q.deleteToken, r.kind, r.key)
		}
		if err := b.ExecContext(ctx); err != nil {
			return stores.Unavailable(err)
		}
	}
	for i := 0; i < len(refs); i += 100 {
		b := s.Batch(gocql.UnloggedBatch).Consistency(e.cfg.Consistency.Write)
		for _, r := range refs[i:min(i+100, len(refs))] {
			b.Query(e.q.deleteFamily, family, r.kind, r.key)
		}
		if err := b.ExecContext(ctx); err != nil {
			return stores.Unavailable(err)
		}
	}
	return nil
}

// Interface guard.
var _ stores.Store = (*Engine)(nil)
