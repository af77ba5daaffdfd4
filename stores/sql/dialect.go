package sql

import (
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// A dialect holds everything that differs between database systems. The
// engine writes each statement once, with ? placeholders and the {now} and
// {limit} markers, and the dialect turns it into its own SQL.
//
// Times are kept as BIGINT milliseconds since the Unix epoch (UTC): every
// system and driver compares and returns those alike, with no session time
// zone or driver time type in between. Only the database's own clock, used
// to purge, needs a per-dialect expression.
type dialect struct {
	// name is the dialect's configuration name and its folder under sql/.
	name string
	// driver is the database/sql driver name.
	driver string
	// placeholder renders the n-th (1-based) parameter.
	placeholder func(n int) string
	// nowMillis is an expression for the database's current time in
	// milliseconds since the Unix epoch, UTC. It must be evaluated once per
	// statement so that the expiry column is range scanned.
	nowMillis string
	// deleteBatch returns a statement deleting at most n rows of table
	// matching where (which uses no parameters).
	deleteBatch func(table, key, where string, n int) string
	// purgeDuty, when positive, caps the share of time a purge spends
	// deleting: InnoDB's work after each commit (removing delete-marked
	// index records) and the CPU it takes from a gateway on the same host
	// do not show in the lookup the pacer watches.
	purgeDuty float64
	// purgeGrowth, when positive, caps how many times the first batch a
	// purge batch grows to (default purge.DefaultGrowth).
	purgeGrowth int
	// markRevoked returns a statement that records a revoked family in
	// table: it inserts (family, expires_at) from parameters 1 and 2, or
	// raises the expiry of an existing row, never lowers it.
	markRevoked func(table string) string
	// maxBatch, when positive, caps the rows one purge statement deletes.
	maxBatch int
	// counted prefixes the statements whose affected-row count the engine
	// reads, so that no session or server setting can hide the count.
	counted string
	// transactionalDDL says CREATE TABLE and INDEX can be rolled back, so
	// the schema is applied in one transaction.
	transactionalDDL bool
	// connInit returns the statements to run on every new connection.
	connInit func(c ConnOptions) []string
	// prepareDSN adjusts a user's DSN to what the engine relies on.
	prepareDSN func(dsn string) (string, error)
	// addColumn is the ALTER TABLE statement adding a column, with the
	// table and the column's definition for %s and %s.
	addColumn string
	// buildHint explains a missing driver.
	buildHint string
}

func questionMark(int) string { return "?" }

var dialects = map[string]*dialect{
	"mysql": {
		addColumn:   "ALTER TABLE %s ADD COLUMN %s",
		name:        "mysql",
		driver:      "mysql",
		placeholder: questionMark,
		// TIMESTAMPDIFF against UTC_TIMESTAMP is independent of the
		// session time zone, unlike UNIX_TIMESTAMP(NOW(3)).
		nowMillis: "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)",
		// In expiry order, so each batch walks the expiry index from its start.
		deleteBatch: func(table, _, where string, n int) string {
			return fmt.Sprintf("DELETE FROM %s WHERE %s ORDER BY expires_at LIMIT %d", table, where, n)
		},
		purgeDuty: 0.5,
		// Batches of thousands of scattered rows stall lookups behind
		// InnoDB's page reads and writes.
		purgeGrowth: 1,
		// VALUES() rather than MySQL 8's row alias, which MariaDB lacks.
		markRevoked: func(table string) string {
			return "INSERT INTO " + table + " (family, expires_at) VALUES (?, ?)" +
				" ON DUPLICATE KEY UPDATE expires_at = GREATEST(expires_at, VALUES(expires_at))"
		},
		prepareDSN: prepareMySQLDSN,
	},
	"postgres": {
		addColumn:        "ALTER TABLE %s ADD COLUMN %s",
		name:             "postgres",
		driver:           "pgx",
		placeholder:      func(n int) string { return "$" + strconv.Itoa(n) },
		transactionalDDL: true,
		// CURRENT_TIMESTAMP is stable within a statement, so the planner
		// can use it as an index bound; clock_timestamp() is not.
		nowMillis: "CAST(EXTRACT(EPOCH FROM CURRENT_TIMESTAMP) * 1000 AS BIGINT)",
		// By ctid: "key IN (SELECT key ... LIMIT n)" is planned as a scan of
		// the whole table per batch, this as an index range scan.
		deleteBatch: func(table, _, where string, n int) string {
			return fmt.Sprintf("DELETE FROM %s WHERE ctid = ANY(ARRAY(SELECT ctid FROM %s WHERE %s ORDER BY expires_at LIMIT %d))", table, table, where, n)
		},
		markRevoked: func(table string) string {
			return "INSERT INTO " + table + " (family, expires_at) VALUES (?, ?)" +
				" ON CONFLICT (family) DO UPDATE SET expires_at = GREATEST(" + table + ".expires_at, EXCLUDED.expires_at)"
		},
	},
	"sqlite": {
		addColumn:        "ALTER TABLE %s ADD COLUMN %s",
		name:             "sqlite",
		driver:           "sqlite",
		placeholder:      questionMark,
		transactionalDDL: true,
		// 'now' is fixed for the duration of one sqlite3_step call.
		nowMillis: "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
		deleteBatch: func(table, _, where string, n int) string {
			return fmt.Sprintf("DELETE FROM %s WHERE rowid IN (SELECT rowid FROM %s WHERE %s LIMIT %d)", table, table, where, n)
		},
		// Upsert needs SQLite 3.24; two-argument MAX is the scalar maximum.
		markRevoked: func(table string) string {
			return "INSERT INTO " + table + " (family, expires_at) VALUES (?, ?)" +
				" ON CONFLICT (family) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)"
		},
		prepareDSN: prepareSQLiteDSN,
	},
	"sqlserver": {
		addColumn:        "ALTER TABLE %s ADD %s",
		name:             "sqlserver",
		driver:           "sqlserver",
		placeholder:      func(n int) string { return "@p" + strconv.Itoa(n) },
		transactionalDDL: true,
		nowMillis:        "DATEDIFF_BIG(MILLISECOND, '1970-01-01', SYSUTCDATETIME())",
		deleteBatch: func(table, _, where string, n int) string {
			return fmt.Sprintf("DELETE TOP (%d) FROM %s WHERE %s", n, table, where)
		},
		// HOLDLOCK makes the MERGE atomic against a concurrent one for the
		// same family; SQL Server requires MERGE to end with a semicolon.
		markRevoked: func(table string) string {
			return "MERGE INTO " + table + " WITH (HOLDLOCK) AS d USING (SELECT CAST(? AS VARCHAR(128)) AS family, CAST(? AS BIGINT) AS expires_at) AS s" +
				" ON d.family = s.family" +
				" WHEN MATCHED AND d.expires_at < s.expires_at THEN UPDATE SET expires_at = s.expires_at" +
				" WHEN NOT MATCHED THEN INSERT (family, expires_at) VALUES (s.family, s.expires_at);"
		},
		// Past 5,000 row locks SQL Server escalates to a table lock, which
		// would stall every redemption while a batch runs.
		maxBatch: 4000,
		// go-mssqldb counts rows only from DONE tokens that carry a count,
		// and with NOCOUNT on (the server's user options bit 512, or a
		// logon trigger) none do: every claim would lose, silently.
		counted: "SET NOCOUNT OFF; ",
	},
	"oracle": {
		addColumn:   "ALTER TABLE %s ADD %s",
		name:        "oracle",
		driver:      "oracle",
		placeholder: func(n int) string { return ":" + strconv.Itoa(n) },
		// SYSTIMESTAMP is evaluated once per statement. The milliseconds
		// come from the exact interval since the epoch: casting to DATE
		// for whole seconds may round (Oracle does not say), which would
		// run the clock up to 1s fast and step it backwards. The epoch is
		// written without colons, which a driver could take for binds.
		nowMillis: oracleNowMillis("(SYS_EXTRACT_UTC(SYSTIMESTAMP) - CAST(DATE '1970-01-01' AS TIMESTAMP))"),
		deleteBatch: func(table, _, where string, n int) string {
			return fmt.Sprintf("DELETE FROM %s WHERE %s AND ROWNUM <= %d", table, where, n)
		},
		markRevoked: func(table string) string {
			return "MERGE INTO " + table + " d USING (SELECT CAST(? AS VARCHAR2(128)) AS family, CAST(? AS NUMBER(19)) AS expires_at FROM DUAL) s" +
				" ON (d.family = s.family)" +
				" WHEN MATCHED THEN UPDATE SET d.expires_at = GREATEST(d.expires_at, s.expires_at)" +
				" WHEN NOT MATCHED THEN INSERT (family, expires_at) VALUES (s.family, s.expires_at)"
		},
	},
	"db2": {
		addColumn:        "ALTER TABLE %s ADD COLUMN %s",
		name:             "db2",
		driver:           "go_ibm_db",
		placeholder:      questionMark,
		transactionalDDL: true,
		// CURRENT TIMESTAMP is evaluated once per statement.
		nowMillis: "((BIGINT(DAYS(CURRENT TIMESTAMP - CURRENT TIMEZONE)) - DAYS('1970-01-01')) * 86400000" +
			" + BIGINT(MIDNIGHT_SECONDS(CURRENT TIMESTAMP - CURRENT TIMEZONE)) * 1000" +
			" + MICROSECOND(CURRENT TIMESTAMP) / 1000)",
		// By key, in expiry order: the subselect walks the expiry index.
		deleteBatch: func(table, key, where string, n int) string {
			return fmt.Sprintf("DELETE FROM %s WHERE %s IN (SELECT %s FROM %s WHERE %s ORDER BY expires_at FETCH FIRST %d ROWS ONLY)",
				table, key, key, table, where, n)
		},
		// go_ibm_db never cancels a statement, and Db2 waits for a row
		// lock for ever by default: bound the wait on every connection.
		connInit: func(c ConnOptions) []string {
			return []string{fmt.Sprintf("SET CURRENT LOCK TIMEOUT %d", lockTimeoutSeconds(c.LockTimeout))}
		},
		// Db2 needs the parameter markers of a VALUES row typed.
		markRevoked: func(table string) string {
			return "MERGE INTO " + table + " AS d USING (VALUES (CAST(? AS VARCHAR(128)), CAST(? AS BIGINT))) AS s (family, expires_at)" +
				" ON d.family = s.family" +
				" WHEN MATCHED AND d.expires_at < s.expires_at THEN UPDATE SET expires_at = s.expires_at" +
				" WHEN NOT MATCHED THEN INSERT (family, expires_at) VALUES (s.family, s.expires_at)"
		},
		buildHint: "built without db2 support: rebuild with -tags db2 (needs cgo and IBM's clidriver)",
	},
}

// oracleNowMillis sums the fields of the interval d since the epoch.
func oracleNowMillis(d string) string {
	return "(EXTRACT(DAY FROM " + d + ") * 86400000" +
		" + EXTRACT(HOUR FROM " + d + ") * 3600000" +
		" + EXTRACT(MINUTE FROM " + d + ") * 60000" +
		" + FLOOR(EXTRACT(SECOND FROM " + d + ") * 1000))"
}

// lockTimeoutSeconds rounds a lock timeout up to whole seconds, at least 1:
// Db2 takes seconds, and 0 would mean not waiting at all.
func lockTimeoutSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// dialectNames lists the supported dialects, sorted.
func dialectNames() []string {
	names := make([]string, 0, len(dialects))
	for n := range dialects {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// lookupDialect returns the named dialect.
func lookupDialect(name string) (*dialect, error) {
	d, ok := dialects[name]
	if !ok {
		return nil, fmt.Errorf("unknown dialect %q (want one of %s)", name, strings.Join(dialectNames(), ", "))
	}
	return d, nil
}

// available reports whether the dialect's driver is linked in.
func (d *dialect) available() error {
	if slices.Contains(sql.Drivers(), d.driver) {
		return nil
	}
	if d.buildHint != "" {
		return fmt.Errorf("dialect %s: %s", d.name, d.buildHint)
	}
	return fmt.Errorf("dialect %s: database/sql driver %q not registered", d.name, d.driver)
}

// batch caps a purge batch size at the dialect's maximum.
func (d *dialect) batch(n int) int {
	if d.maxBatch > 0 && n > d.maxBatch {
		return d.maxBatch
	}
	return n
}

// rebind renders a statement written with ? placeholders and the {now}
// marker in the dialect's syntax. The engine's statements contain no ?
// inside string literals.
func (d *dialect) rebind(q string) string {
	q = strings.ReplaceAll(q, "{now}", d.nowMillis)
	if d.placeholder(1) == "?" {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString(d.placeholder(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// prepareMySQLDSN makes the driver report matched rather than changed rows
// (the purge lease renews a row with what may be the same value) and, unless
// the DSN says otherwise, interpolate parameters client side: one round trip
// per statement instead of prepare, execute and close.
func prepareMySQLDSN(dsn string) (string, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", err
	}
	cfg.ClientFoundRows = true
	if !strings.Contains(dsn, "interpolateParams=") {
		cfg.InterpolateParams = true
	}
	return cfg.FormatDSN(), nil
}

// prepareSQLiteDSN adds a busy timeout, so that concurrent writers wait for
// the lock instead of failing, and the WAL journal, so that readers do not
// block the writer, unless the DSN sets them itself.
func prepareSQLiteDSN(dsn string) (string, error) {
	if dsn == "" {
		return "", fmt.Errorf("empty sqlite DSN")
	}
	var add []string
	if !strings.Contains(dsn, "busy_timeout") {
		add = append(add, "_pragma=busy_timeout(10000)")
	}
	if !strings.Contains(dsn, "journal_mode") && !strings.Contains(dsn, ":memory:") && !strings.Contains(dsn, "mode=memory") {
		add = append(add, "_pragma=journal_mode(wal)")
	}
	if len(add) == 0 {
		return dsn, nil
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + strings.Join(add, "&"), nil
}
