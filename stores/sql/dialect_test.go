package sql

import (
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// statementArgs is how many parameters each statement takes.
var statementArgs = map[string]int{
	"version": 0, "leaseCount": 1, "leaseInsert": 1, "leaseAcquire": 3, "leaseRelease": 2,
	"insertCode": 13, "consumeCode": 2, "selectCode": 1,
	"insertAccess": 10, "insertRefresh": 10, "lookupAccess": 2, "lookupRefresh": 2,
	"consumeRefresh": 2, "selectRefresh": 1, "revokeAccess": 1, "revokeRefresh": 1,
	"familyAccess": 1, "familyRefresh": 1,
	"markRevoked": 2, "checkRevoked": 2,
	"insertKey": 4, "selectKeys": 1, "deleteKeys": 1,
	"insertClient": 18, "selectClient": 2, "listClients": 1, "updateClient": 19, "deleteClient": 2, "deleteLapsedClient": 2,
	"subjectFamilies": 2, "subjectCodes": 1, "subjectAccess": 1, "subjectRefresh": 1,
	"clientFamilies": 2, "clientCodes": 1, "clientAccess": 1, "clientRefresh": 1,
	"bothFamilies": 4, "bothCodes": 2, "bothAccess": 2, "bothRefresh": 2,
	"serviceAccess": 1, "serviceRefresh": 1,
	"deleteExpiredOnce": 2, "insertOnce": 3, "takeOnce": 2, "selectOnce": 1,
}

var placeholderPatterns = map[string]*regexp.Regexp{
	"mysql":     regexp.MustCompile(`\?`),
	"sqlite":    regexp.MustCompile(`\?`),
	"db2":       regexp.MustCompile(`\?`),
	"postgres":  regexp.MustCompile(`\$(\d+)`),
	"sqlserver": regexp.MustCompile(`@p(\d+)`),
	"oracle":    regexp.MustCompile(`:(\d+)`),
}

// TestStatements checks every generated statement of every dialect for its
// placeholder syntax and count, and that no marker is left.
func TestStatements(t *testing.T) {
	for _, name := range dialectNames() {
		t.Run(name, func(t *testing.T) {
			d := dialects[name]
			e, err := NewEngine(nil, name, Options{TablePrefix: "gw_"})
			if err != nil {
				t.Fatal(err)
			}
			v := reflect.ValueOf(e.q)
			for i := 0; i < v.NumField(); i++ {
				field := v.Type().Field(i).Name
				q := v.Field(i).String()
				want, ok := statementArgs[field]
				if !ok {
					t.Fatalf("statement %s has no expected argument count", field)
				}
				checkStatement(t, name, field, q, want)
				if strings.Contains(q, "oauth_") || !strings.Contains(q, "gw_") {
					t.Errorf("%s: %s does not use the table prefix: %s", name, field, q)
				}
			}
			for _, tbl := range [][2]string{{e.tables.codes, "code_key"}, {e.tables.access, "token_key"}} {
				q := e.purgeStatement(tbl[0], tbl[1], 1000)
				checkStatement(t, name, "purge", q, 0)
				if !strings.Contains(q, d.nowMillis) || !strings.Contains(q, "expires_at < ") {
					t.Errorf("%s: purge does not compare expires_at with the database clock: %s", name, q)
				}
			}
		})
	}
}

func checkStatement(t *testing.T, dialect, field, q string, want int) {
	t.Helper()
	if strings.Contains(q, "{now}") || strings.Contains(q, "{limit}") {
		t.Errorf("%s: %s has an unreplaced marker: %s", dialect, field, q)
	}
	// SQL Server's counted statements start with SET NOCOUNT OFF; and its
	// MERGE must end with a semicolon: no other semicolon is allowed.
	body := strings.TrimPrefix(q, dialects[dialect].counted)
	if dialect == "sqlserver" && strings.HasPrefix(body, "MERGE ") {
		body = strings.TrimSuffix(body, ";")
	}
	if strings.Contains(body, ";") {
		t.Errorf("%s: %s has a semicolon: %s", dialect, field, q)
	}
	re := placeholderPatterns[dialect]
	found := re.FindAllStringSubmatch(q, -1)
	if len(found) != want {
		t.Errorf("%s: %s has %d placeholders, want %d: %s", dialect, field, len(found), want, q)
	}
	if re.NumSubexp() == 1 {
		for i, m := range found {
			if m[1] != strconv.Itoa(i+1) {
				t.Errorf("%s: %s placeholder %d is numbered %s: %s", dialect, field, i+1, m[1], q)
			}
		}
		if strings.Contains(q, "?") {
			t.Errorf("%s: %s keeps a ? placeholder: %s", dialect, field, q)
		}
	}
}

// TestPurgeStatements pins each dialect's batched delete.
func TestPurgeStatements(t *testing.T) {
	want := map[string]string{
		"mysql":     "DELETE FROM oauth_codes WHERE expires_at < (TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000) ORDER BY expires_at LIMIT 500",
		"postgres":  "DELETE FROM oauth_codes WHERE ctid = ANY(ARRAY(SELECT ctid FROM oauth_codes WHERE expires_at < CAST(EXTRACT(EPOCH FROM CURRENT_TIMESTAMP) * 1000 AS BIGINT) ORDER BY expires_at LIMIT 500))",
		"sqlite":    "DELETE FROM oauth_codes WHERE rowid IN (SELECT rowid FROM oauth_codes WHERE expires_at < CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) LIMIT 500)",
		"sqlserver": "SET NOCOUNT OFF; DELETE TOP (500) FROM oauth_codes WHERE expires_at < DATEDIFF_BIG(MILLISECOND, '1970-01-01', SYSUTCDATETIME())",
		"oracle":    "DELETE FROM oauth_codes WHERE expires_at < " + oracleClock + " AND ROWNUM <= 500",
		"db2": "DELETE FROM oauth_codes WHERE code_key IN (SELECT code_key FROM oauth_codes WHERE expires_at < ((BIGINT(DAYS(CURRENT TIMESTAMP - CURRENT TIMEZONE)) - DAYS('1970-01-01')) * 86400000" +
			" + BIGINT(MIDNIGHT_SECONDS(CURRENT TIMESTAMP - CURRENT TIMEZONE)) * 1000 + MICROSECOND(CURRENT TIMESTAMP) / 1000) ORDER BY expires_at FETCH FIRST 500 ROWS ONLY)",
	}
	for _, name := range dialectNames() {
		e, err := NewEngine(nil, name, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.purgeStatement("oauth_codes", "code_key", 500); got != want[name] {
			t.Errorf("%s purge:\n got  %s\n want %s", name, got, want[name])
		}
	}
}

// TestConsumeStatements pins the conditional UPDATE that decides the one
// winner, per placeholder style.
func TestConsumeStatements(t *testing.T) {
	want := map[string]string{
		"mysql":     "UPDATE oauth_codes SET used = 1 WHERE code_key = ? AND used = 0 AND expires_at > ?",
		"postgres":  "UPDATE oauth_codes SET used = 1 WHERE code_key = $1 AND used = 0 AND expires_at > $2",
		"sqlserver": "SET NOCOUNT OFF; UPDATE oauth_codes SET used = 1 WHERE code_key = @p1 AND used = 0 AND expires_at > @p2",
		"oracle":    "UPDATE oauth_codes SET used = 1 WHERE code_key = :1 AND used = 0 AND expires_at > :2",
		"db2":       "UPDATE oauth_codes SET used = 1 WHERE code_key = ? AND used = 0 AND expires_at > ?",
	}
	for name, w := range want {
		e, _ := NewEngine(nil, name, Options{})
		if e.q.consumeCode != w {
			t.Errorf("%s:\n got  %s\n want %s", name, e.q.consumeCode, w)
		}
	}
	e, _ := NewEngine(nil, "oracle", Options{LeaseDuration: time.Minute})
	if !strings.Contains(e.q.leaseAcquire, "SET holder = :1, lease_until = (") ||
		!strings.Contains(e.q.leaseAcquire, " + 60000 WHERE name = :2 AND (lease_until < (") ||
		!strings.HasSuffix(e.q.leaseAcquire, " OR holder = :3)") {
		t.Errorf("oracle lease: %s", e.q.leaseAcquire)
	}
}

// TestMarkRevokedStatements pins each dialect's upsert of a revoked-family
// marker: it inserts the row or raises its expiry, never lowers it.
func TestMarkRevokedStatements(t *testing.T) {
	want := map[string]string{
		"mysql":    "INSERT INTO oauth_revoked_families (family, expires_at) VALUES (?, ?) ON DUPLICATE KEY UPDATE expires_at = GREATEST(expires_at, VALUES(expires_at))",
		"postgres": "INSERT INTO oauth_revoked_families (family, expires_at) VALUES ($1, $2) ON CONFLICT (family) DO UPDATE SET expires_at = GREATEST(oauth_revoked_families.expires_at, EXCLUDED.expires_at)",
		"sqlite":   "INSERT INTO oauth_revoked_families (family, expires_at) VALUES (?, ?) ON CONFLICT (family) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)",
		"sqlserver": "MERGE INTO oauth_revoked_families WITH (HOLDLOCK) AS d USING (SELECT CAST(@p1 AS VARCHAR(128)) AS family, CAST(@p2 AS BIGINT) AS expires_at) AS s ON d.family = s.family" +
			" WHEN MATCHED AND d.expires_at < s.expires_at THEN UPDATE SET expires_at = s.expires_at" +
			" WHEN NOT MATCHED THEN INSERT (family, expires_at) VALUES (s.family, s.expires_at);",
		"oracle": "MERGE INTO oauth_revoked_families d USING (SELECT CAST(:1 AS VARCHAR2(128)) AS family, CAST(:2 AS NUMBER(19)) AS expires_at FROM DUAL) s ON (d.family = s.family)" +
			" WHEN MATCHED THEN UPDATE SET d.expires_at = GREATEST(d.expires_at, s.expires_at)" +
			" WHEN NOT MATCHED THEN INSERT (family, expires_at) VALUES (s.family, s.expires_at)",
		"db2": "MERGE INTO oauth_revoked_families AS d USING (VALUES (CAST(? AS VARCHAR(128)), CAST(? AS BIGINT))) AS s (family, expires_at) ON d.family = s.family" +
			" WHEN MATCHED AND d.expires_at < s.expires_at THEN UPDATE SET expires_at = s.expires_at" +
			" WHEN NOT MATCHED THEN INSERT (family, expires_at) VALUES (s.family, s.expires_at)",
	}
	for _, name := range dialectNames() {
		e, _ := NewEngine(nil, name, Options{})
		if e.q.markRevoked != want[name] {
			t.Errorf("%s:\n got  %s\n want %s", name, e.q.markRevoked, want[name])
		}
	}
}

// TestSchemaFiles checks the bundled schemas: each has the five tables and the expiry
// and family indexes, and a prefix replaces oauth_ everywhere.
func TestSchemaFiles(t *testing.T) {
	for _, name := range dialectNames() {
		t.Run(name, func(t *testing.T) {
			stmts, err := Schema(name, DefaultTablePrefix)
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(stmts, "\n")
			for _, want := range []string{
				"CREATE TABLE oauth_schema_version", "CREATE TABLE oauth_codes", "CREATE TABLE oauth_access_tokens",
				"CREATE TABLE oauth_refresh_tokens", "CREATE TABLE oauth_purge_lease", "CREATE TABLE oauth_revoked_families",
				"family " /* the marker's key */, "ON oauth_revoked_families (expires_at)",
				"ON oauth_codes (expires_at)", "ON oauth_access_tokens (expires_at)", "ON oauth_refresh_tokens (expires_at)",
				"ON oauth_access_tokens (family)", "ON oauth_refresh_tokens (family)",
				"INSERT INTO oauth_schema_version (version) VALUES (" + strconv.Itoa(SchemaVersion) + ")",
				"INSERT INTO oauth_purge_lease (name, holder, lease_until) VALUES ('" + leaseName + "', 'none', 0)",
			} {
				if !strings.Contains(joined, want) {
					t.Errorf("schema lacks %q", want)
				}
			}
			if !regexp.MustCompile(`code_key N?CHAR\(64\)|code_key TEXT`).MatchString(joined) {
				t.Error("code_key is not CHAR(64)")
			}
			for _, s := range stmts {
				if strings.Contains(s, ";") || strings.HasPrefix(strings.TrimSpace(s), "--") {
					t.Errorf("statement not split cleanly: %q", s)
				}
			}
			prefixed, _ := Schema(name, "gw_")
			pj := strings.Join(prefixed, "\n")
			if strings.Contains(pj, "oauth_") || !strings.Contains(pj, "CREATE TABLE gw_codes") || !strings.Contains(pj, "INDEX gw_rt_fam_idx") ||
				!strings.Contains(pj, "CREATE TABLE gw_revoked_families") {
				t.Errorf("prefix not applied everywhere")
			}
			if len(prefixed) != len(stmts) {
				t.Errorf("%d statements with prefix, %d without", len(prefixed), len(stmts))
			}
		})
	}
}

func TestRebindKeepsQuestionMarkDialects(t *testing.T) {
	for _, name := range []string{"mysql", "sqlite", "db2"} {
		if got := dialects[name].rebind("a = ? AND b = ?"); got != "a = ? AND b = ?" {
			t.Errorf("%s: %s", name, got)
		}
	}
}

func TestPrepareDSN(t *testing.T) {
	got, err := prepareMySQLDSN("u:p@tcp(db:3306)/oauth2?parseTime=true")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"clientFoundRows=true", "interpolateParams=true", "parseTime=true"} {
		if !strings.Contains(got, want) {
			t.Errorf("mysql DSN %q lacks %s", got, want)
		}
	}
	got, _ = prepareMySQLDSN("u:p@tcp(db:3306)/oauth2?interpolateParams=false")
	if strings.Contains(got, "interpolateParams=true") {
		t.Errorf("mysql DSN %q overrode interpolateParams=false", got)
	}
	got, _ = prepareSQLiteDSN("/tmp/x.db")
	if got != "/tmp/x.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)" {
		t.Errorf("sqlite DSN %q", got)
	}
	got, _ = prepareSQLiteDSN("file:/tmp/x.db?_pragma=busy_timeout(50)")
	if got != "file:/tmp/x.db?_pragma=busy_timeout(50)&_pragma=journal_mode(wal)" {
		t.Errorf("sqlite DSN %q", got)
	}
}

func TestDB2WithoutTag(t *testing.T) {
	if err := dialects["db2"].available(); err == nil {
		t.Skip("built with -tags db2")
	}
	_, err := Open("db2", "HOSTNAME=127.0.0.1;PORT=1;DATABASE=x;UID=u;PWD=p")
	if err == nil || !strings.Contains(err.Error(), "rebuild with -tags db2") {
		t.Fatalf("db2 without the driver: %v", err)
	}
}

// oracleClock is the Oracle clock, pinned: epoch milliseconds summed from
// the exact interval, never through a DATE cast, which may round.
const oracleClock = "(EXTRACT(DAY FROM (SYS_EXTRACT_UTC(SYSTIMESTAMP) - CAST(DATE '1970-01-01' AS TIMESTAMP))) * 86400000" +
	" + EXTRACT(HOUR FROM (SYS_EXTRACT_UTC(SYSTIMESTAMP) - CAST(DATE '1970-01-01' AS TIMESTAMP))) * 3600000" +
	" + EXTRACT(MINUTE FROM (SYS_EXTRACT_UTC(SYSTIMESTAMP) - CAST(DATE '1970-01-01' AS TIMESTAMP))) * 60000" +
	" + FLOOR(EXTRACT(SECOND FROM (SYS_EXTRACT_UTC(SYSTIMESTAMP) - CAST(DATE '1970-01-01' AS TIMESTAMP))) * 1000))"

func TestOracleClock(t *testing.T) {
	if got := dialects["oracle"].nowMillis; got != oracleClock {
		t.Fatalf("oracle clock:\n got  %s\n want %s", got, oracleClock)
	}
	if strings.Contains(oracleClock, "AS DATE") || strings.Contains(oracleClock, "ROUND") {
		t.Fatal("the oracle clock must not round")
	}
	if strings.Contains(oracleClock, ":") {
		t.Fatal("a colon in the oracle clock may be taken for a bind variable")
	}
}

// TestSQLServerCounts checks that every SQL Server statement whose row
// count decides something turns NOCOUNT off in its own batch, and that
// purge batches stay under the lock escalation threshold.
func TestSQLServerCounts(t *testing.T) {
	e, err := NewEngine(nil, "sqlserver", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string]string{
		"consumeCode": e.q.consumeCode, "consumeRefresh": e.q.consumeRefresh, "leaseAcquire": e.q.leaseAcquire,
		"purge": e.purgeStatement(e.tables.access, "token_key", 100),
	} {
		if !strings.HasPrefix(q, "SET NOCOUNT OFF; ") {
			t.Errorf("%s does not turn NOCOUNT off: %s", name, q)
		}
	}
	for _, c := range []struct{ in, want int }{{1000, 1000}, {4999, 4000}, {100000, 4000}} {
		if got := e.d.batch(c.in); got != c.want {
			t.Errorf("sqlserver batch %d: got %d, want %d", c.in, got, c.want)
		}
	}
	for _, name := range []string{"mysql", "postgres", "sqlite", "oracle", "db2"} {
		if got := dialects[name].batch(100000); got != 100000 {
			t.Errorf("%s capped a batch at %d", name, got)
		}
		if dialects[name].counted != "" {
			t.Errorf("%s prefixes counted statements", name)
		}
	}
}

// TestSchemaKeysAndLengths pins the schema choices the review asked for:
// SQL Server's random keys are not the clustering key, and Db2 measures
// strings in characters, like the other systems.
func TestSchemaKeysAndLengths(t *testing.T) {
	stmts, err := Schema("sqlserver", DefaultTablePrefix)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(stmts, "\n")
	for _, want := range []string{
		"code_key NCHAR(64) NOT NULL PRIMARY KEY NONCLUSTERED", "CREATE CLUSTERED INDEX oauth_codes_exp_idx",
		"CREATE CLUSTERED INDEX oauth_at_exp_idx", "CREATE CLUSTERED INDEX oauth_rt_exp_idx",
		"once_key NCHAR(64) NOT NULL PRIMARY KEY NONCLUSTERED", "CREATE CLUSTERED INDEX oauth_single_use_exp_idx",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("sqlserver schema lacks %q", want)
		}
	}
	if n := strings.Count(joined, "PRIMARY KEY NONCLUSTERED"); n != 4 {
		t.Errorf("sqlserver: %d nonclustered primary keys, want 4", n)
	}
	stmts, err = Schema("db2", DefaultTablePrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		for _, m := range regexp.MustCompile(`VARCHAR\([^)]*\)`).FindAllString(s, -1) {
			if !strings.HasSuffix(m, " CODEUNITS32)") {
				t.Errorf("db2: %s counts bytes, not characters", m)
			}
		}
	}
}

func TestDB2LockTimeoutStatement(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "SET CURRENT LOCK TIMEOUT 1"}, {100 * time.Millisecond, "SET CURRENT LOCK TIMEOUT 1"},
		{1500 * time.Millisecond, "SET CURRENT LOCK TIMEOUT 2"}, {2 * time.Second, "SET CURRENT LOCK TIMEOUT 2"},
		{30 * time.Second, "SET CURRENT LOCK TIMEOUT 30"},
	} {
		got := dialects["db2"].connInit(ConnOptions{LockTimeout: c.d})
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("lock timeout %v: %q, want %q", c.d, got, c.want)
		}
	}
	for _, name := range dialectNames() {
		if name != "db2" && dialects[name].connInit != nil {
			t.Errorf("%s runs statements on every connection", name)
		}
	}
}
