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
	"insertCode": 10, "consumeCode": 2, "selectCode": 1,
	"insertAccess": 7, "insertRefresh": 7, "lookupAccess": 2, "lookupRefresh": 2,
	"consumeRefresh": 2, "selectRefresh": 1, "revokeAccess": 1, "revokeRefresh": 1,
	"familyAccess": 1, "familyRefresh": 1,
	"markRevoked": 2, "checkRevoked": 2,
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
	if strings.Contains(strings.TrimSuffix(q, ";"), ";") || (strings.HasSuffix(q, ";") && !(dialect == "sqlserver" && strings.HasPrefix(q, "MERGE "))) {
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
		"sqlserver": "DELETE TOP (500) FROM oauth_codes WHERE expires_at < DATEDIFF_BIG(MILLISECOND, '1970-01-01', SYSUTCDATETIME())",
		"oracle": "DELETE FROM oauth_codes WHERE expires_at < (ROUND((CAST(SYS_EXTRACT_UTC(SYSTIMESTAMP) AS DATE) - DATE '1970-01-01') * 86400) * 1000" +
			" + TO_NUMBER(TO_CHAR(SYSTIMESTAMP, 'FF3'))) AND ROWNUM <= 500",
		"db2": "DELETE FROM (SELECT * FROM oauth_codes WHERE expires_at < ((BIGINT(DAYS(CURRENT TIMESTAMP - CURRENT TIMEZONE)) - DAYS('1970-01-01')) * 86400000" +
			" + BIGINT(MIDNIGHT_SECONDS(CURRENT TIMESTAMP - CURRENT TIMEZONE)) * 1000 + MICROSECOND(CURRENT TIMESTAMP) / 1000) FETCH FIRST 500 ROWS ONLY)",
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
		"sqlserver": "UPDATE oauth_codes SET used = 1 WHERE code_key = @p1 AND used = 0 AND expires_at > @p2",
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
		"sqlserver": "MERGE INTO oauth_revoked_families WITH (HOLDLOCK) AS d USING (SELECT @p1 AS family, @p2 AS expires_at) AS s ON d.family = s.family" +
			" WHEN MATCHED AND d.expires_at < s.expires_at THEN UPDATE SET expires_at = s.expires_at" +
			" WHEN NOT MATCHED THEN INSERT (family, expires_at) VALUES (s.family, s.expires_at);",
		"oracle": "MERGE INTO oauth_revoked_families d USING (SELECT :1 AS family, :2 AS expires_at FROM DUAL) s ON (d.family = s.family)" +
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
