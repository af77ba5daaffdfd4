// Runs the SQL store's statements, as dumped by
// `go test ./stores/sql -run TestDumpStatements -dump=DIR`, on JDBC
// emulators of SQL Server, Oracle and Db2, and checks what they do.
// Started by scripts/dialects.sh:
//
//   java -cp 'JARS/*' Check.java DIR TARGET... -- LIMIT...
//
// TARGET is id|dialect|jdbc-url; LIMIT is id:rewrite, a declared emulator
// limit: a rewrite the checker may apply to a statement the emulator
// refuses as written (nocount, clustered, codeunits32) or the clock
// expression it may replace by a literal (clock). Anything else that
// fails is a failure. Prints PASS, FAIL, LIMIT and NOTE lines and, last,
// "java: N passed, M failed, L limits".
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class Check {
    record Line(String kind, String name, String table, List<String> cols, String sql) {
        boolean isInsert() { return sql.startsWith("INSERT"); }
    }

    record Col(int type, int size) {
        // A flag (SMALLINT, NUMBER(1)) cannot hold a time: it gets 1.
        boolean flag() {
            return numeric() && (type == Types.SMALLINT || type == Types.TINYINT || (size > 0 && size < 10));
        }

        boolean numeric() {
            return switch (type) {
                case Types.BIGINT, Types.INTEGER, Types.SMALLINT, Types.TINYINT, Types.NUMERIC, Types.DECIMAL -> true;
                default -> false;
            };
        }
    }

    static int passed, failed, limits;

    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]);
        List<String[]> targets = new ArrayList<>();
        Set<String> declared = new LinkedHashSet<>();
        boolean afterDash = false;
        for (int i = 1; i < args.length; i++) {
            if (args[i].equals("--")) { afterDash = true; continue; }
            if (afterDash) declared.add(args[i]); else targets.add(args[i].split("\\|", 3));
        }
        Set<String> used = new LinkedHashSet<>();
        for (String[] t : targets) {
            List<Line> lines = read(dir.resolve(t[1] + ".tsv"));
            try {
                new Target(t[0], t[1], t[2], lines, declared, used).run();
            } catch (Exception e) {
                fail(t[0], "run", "stopped: " + e);
            }
        }
        for (String d : declared) {
            if (!used.contains(d)) System.out.println("NOTE declared limit " + d + " was not needed: remove it from scripts/dialects.sh");
        }
        System.out.println("java: " + passed + " passed, " + failed + " failed, " + limits + " limits");
        System.exit(failed > 0 ? 1 : 0);
    }

    static List<Line> read(Path p) throws Exception {
        List<Line> out = new ArrayList<>();
        for (String l : Files.readAllLines(p)) {
            if (l.isEmpty()) continue;
            String[] f = l.split("\t", 5);
            List<String> cols = f[3].isEmpty() ? List.of() : List.of(f[3].split(","));
            out.add(new Line(f[0], f[1], f[2], cols, f[4]));
        }
        return out;
    }

    static void pass(String target, String check, String detail) {
        passed++;
        System.out.println("PASS  " + target + "  " + check + (detail.isEmpty() ? "" : ": " + detail));
    }

    static void fail(String target, String check, String detail) {
        failed++;
        System.out.println("FAIL  " + target + "  " + check + ": " + detail);
    }

    static String firstLine(Throwable e) {
        String m = String.valueOf(e.getMessage());
        int i = m.indexOf('\n');
        return i < 0 ? m : m.substring(0, i);
    }

    static String key() {
        StringBuilder b = new StringBuilder();
        ThreadLocalRandom r = ThreadLocalRandom.current();
        for (int i = 0; i < 64; i++) b.append("0123456789abcdef".charAt(r.nextInt(16)));
        return b.toString();
    }

    static final class Target {
        final String id, dialect, url;
        final List<Line> lines;
        final Set<String> declared, used;
        final Map<String, String> effective = new HashMap<>();
        final Map<String, Col> cols = new HashMap<>();
        final Map<String, Integer> rewritten = new LinkedHashMap<>();
        final Map<String, String> rewriteCause = new HashMap<>();
        Connection main;
        String clock;
        String clockLiteral;
        long now;

        Target(String id, String dialect, String url, List<Line> lines, Set<String> declared, Set<String> used) {
            this.id = id; this.dialect = dialect; this.url = url; this.lines = lines;
            this.declared = declared; this.used = used;
        }

        boolean declared(String rewrite) {
            String k = id + ":" + rewrite;
            if (declared.contains(k)) { used.add(k); return true; }
            return false;
        }

        void run() throws Exception {
            main = DriverManager.getConnection(url);
            main.setAutoCommit(true);
            System.out.println("----  " + id + " (" + dialect + " statements on " + main.getMetaData().getDatabaseProductName()
                    + " " + main.getMetaData().getDatabaseProductVersion() + ", " + url + ")");
            schema();
            upgrade();
            loadColumns();
            clock();
            for (Line l : lines) {
                if (l.kind.equals("stmt") || l.kind.equals("purge")) prepare(l);
            }
            for (Line l : lines) {
                if (l.kind.equals("stmt")) smoke(l);
            }
            for (Line l : lines) {
                if (l.kind.equals("stmt") && l.isInsert()) insertChecks(l);
            }
            for (Line l : lines) {
                if (l.kind.equals("stmt") && l.name.startsWith("consume")) oneWinner(l);
            }
            lease();
            for (Line l : lines) {
                if (l.kind.equals("purge")) purge(l);
            }
            for (Map.Entry<String, Integer> e : rewritten.entrySet()) {
                limits++;
                System.out.println("LIMIT " + id + "  " + e.getKey() + " rewrite applied to " + e.getValue()
                        + " statement(s) the emulator refuses as written (" + rewriteCause.get(e.getKey()) + ")");
            }
            main.close();
        }

        // The rewrites an emulator may need, in the order they are tried.
        static final String[] REWRITES = {"nocount", "clustered", "codeunits32", "holdlock", "mergevalues"};

        // MERGE INTO t AS d USING (VALUES (...)) AS s (...) ON ... WHEN NOT
        // MATCHED THEN INSERT (cols) ...: the same parameters as a plain INSERT.
        static final java.util.regex.Pattern MERGE_VALUES = java.util.regex.Pattern.compile(
                "^MERGE INTO (\\w+) AS \\w+ USING \\(VALUES \\((.*)\\)\\) AS \\w+ \\(.*WHEN NOT MATCHED THEN INSERT \\(([^)]*)\\).*$");

        static String rewrite(String r, String sql) {
            return switch (r) {
                case "nocount" -> sql.startsWith("SET NOCOUNT OFF; ") ? sql.substring("SET NOCOUNT OFF; ".length()) : sql;
                case "clustered" -> sql.replace(" PRIMARY KEY NONCLUSTERED", " PRIMARY KEY").replace("CREATE CLUSTERED INDEX", "CREATE INDEX");
                case "codeunits32" -> sql.replace(" CODEUNITS32)", ")");
                case "holdlock" -> sql.replace(" WITH (HOLDLOCK)", "");
                case "mergevalues" -> MERGE_VALUES.matcher(sql).replaceFirst("INSERT INTO $1 ($3) VALUES ($2)");
                default -> sql;
            };
        }

        // sql returns what to run for a statement: as written, with the
        // literal clock when the emulator has no clock function, and with
        // declared rewrites where the emulator refuses it as written.
        String sql(Line l) throws SQLException {
            String key = l.kind + " " + l.name;
            String s = effective.get(key);
            if (s != null) return s;
            s = jdbcPlaceholders(l.sql);
            if (clockLiteral != null && clock != null) s = s.replace(clock, clockLiteral);
            SQLException first = tryPrepare(s);
            if (first == null) { effective.put(key, s); return s; }
            String r = s;
            List<String> applied = new ArrayList<>();
            for (String rw : REWRITES) {
                String n = rewrite(rw, r);
                if (n.equals(r) || !declared(rw)) continue;
                r = n;
                applied.add(rw);
                if (tryPrepare(r) == null) {
                    for (String a : applied) {
                        rewritten.merge(a, 1, Integer::sum);
                        rewriteCause.putIfAbsent(a, firstLine(first));
                    }
                    effective.put(key, r);
                    return r;
                }
            }
            throw first;
        }

        // jdbcPlaceholders turns the Go drivers' numbered parameters (@p1
        // for go-mssqldb, :1 for go-ora) into JDBC's ?, outside string
        // literals, checking that they are numbered 1, 2, ... in order.
        static String jdbcPlaceholders(String sql) throws SQLException {
            StringBuilder b = new StringBuilder();
            Matcher m = Pattern.compile("'[^']*'|@p(\\d+)|:(\\d+)").matcher(sql);
            int next = 1;
            while (m.find()) {
                String n = m.group(1) != null ? m.group(1) : m.group(2);
                if (n == null) { m.appendReplacement(b, Matcher.quoteReplacement(m.group())); continue; }
                if (Integer.parseInt(n) != next++) throw new SQLException("parameter " + m.group() + " out of order in: " + sql);
                m.appendReplacement(b, "?");
            }
            m.appendTail(b);
            return b.toString();
        }

        SQLException tryPrepare(String s) {
            try (PreparedStatement ps = main.prepareStatement(s)) {
                return null;
            } catch (SQLException e) {
                return e;
            }
        }

        void schema() {
            for (Line l : lines) {
                if (!l.kind.equals("schema")) continue;
                String check = "schema statement " + l.name;
                try {
                    String s = sql(l);
                    try (Statement st = main.createStatement()) {
                        st.execute(s);
                    }
                    pass(id, check, s.equals(l.sql) ? "" : "rewritten");
                } catch (SQLException e) {
                    fail(id, check, firstLine(e) + " in: " + l.sql);
                }
            }
        }

        // upgrade drops each column a schema upgrade adds and adds it back
        // with the upgrade's own ALTER TABLE statement.
        void upgrade() {
            for (Line l : lines) {
                if (!l.kind.equals("upgrade")) continue;
                String check = "upgrade statement " + l.name;
                String column = l.name.substring(l.name.indexOf('.') + 1);
                try (Statement st = main.createStatement()) {
                    st.execute("ALTER TABLE " + l.table + " DROP COLUMN " + column);
                    String s = sql(l);
                    st.execute(s);
                    pass(id, check, s.equals(l.sql) ? "" : "rewritten");
                } catch (SQLException e) {
                    fail(id, check, firstLine(e) + " in: " + l.sql);
                }
            }
        }

        void loadColumns() throws SQLException {
            Set<String> tables = new LinkedHashSet<>();
            for (Line l : lines) if (l.kind.equals("schema") && !l.table.isEmpty()) tables.add(l.table.toLowerCase());
            DatabaseMetaData md = main.getMetaData();
            try (ResultSet rs = md.getColumns(null, null, null, null)) {
                while (rs.next()) {
                    if (!tables.contains(rs.getString("TABLE_NAME").toLowerCase())) continue;
                    cols.put(rs.getString("COLUMN_NAME").toLowerCase(), new Col(rs.getInt("DATA_TYPE"), rs.getInt("COLUMN_SIZE")));
                }
            }
        }

        String leaseTable() {
            for (Line l : lines) if (l.kind.equals("stmt") && l.name.equals("leaseAcquire")) return l.table;
            return null;
        }

        void clock() {
            for (Line l : lines) if (l.kind.equals("clock")) clock = l.sql;
            long before = System.currentTimeMillis();
            try (Statement st = main.createStatement();
                 ResultSet rs = st.executeQuery("SELECT " + clock + " FROM " + leaseTable())) {
                rs.next();
                now = rs.getLong(1);
                long off = now - before;
                if (Math.abs(off) < 5000) pass(id, "clock", "the real expression reads " + now + ", " + off + " ms from the JVM's clock");
                else fail(id, "clock", "the real expression reads " + now + ", " + off + " ms from the JVM's clock");
            } catch (SQLException e) {
                now = before;
                clockLiteral = "(" + now + ")";
                if (declared("clock")) {
                    limits++;
                    System.out.println("LIMIT " + id + "  clock: the emulator cannot evaluate " + clock + " ("
                            + firstLine(e) + "): statements run with the literal " + now + " instead; sqlfluff parses the real expression");
                } else {
                    fail(id, "clock", firstLine(e) + " in: " + clock);
                }
            }
        }

        void prepare(Line l) {
            try {
                sql(l);
                pass(id, "prepare " + l.kind + " " + l.name, "");
            } catch (SQLException e) {
                fail(id, "prepare " + l.kind + " " + l.name, firstLine(e) + " in: " + l.sql);
            }
        }

        // bind sets each parameter from values, or else to a value of the
        // column's type: now for numbers, a fresh key-like string (cut to
        // the column's size) for strings.
        void bind(PreparedStatement ps, Line l, Map<String, Object> values) throws SQLException {
            for (int i = 0; i < l.cols.size(); i++) {
                String c = l.cols.get(i);
                Col col = cols.get(c.toLowerCase());
                if (col == null) throw new SQLException("no column " + c + " in the schema");
                Object v = values.containsKey(c) ? values.get(c) : (col.flag() ? (Object) 1L : col.numeric() ? (Object) now : key().substring(0, Math.min(64, col.size)));
                if (v == null) ps.setNull(i + 1, col.type);
                else if (v instanceof Long n) ps.setLong(i + 1, n);
                else ps.setString(i + 1, (String) v);
            }
        }

        int exec(Connection c, Line l, Map<String, Object> values) throws SQLException {
            try (PreparedStatement ps = c.prepareStatement(sql(l))) {
                bind(ps, l, values);
                return ps.executeUpdate();
            }
        }

        void smoke(Line l) {
            String check = "execute " + l.name;
            try {
                main.setAutoCommit(false);
                try (PreparedStatement ps = main.prepareStatement(sql(l))) {
                    bind(ps, l, Map.of());
                    if (l.sql.startsWith("SELECT")) {
                        try (ResultSet rs = ps.executeQuery()) {
                            while (rs.next()) { }
                        }
                    } else {
                        ps.executeUpdate();
                    }
                }
                pass(id, check, "");
            } catch (SQLException e) {
                fail(id, check, firstLine(e));
            } finally {
                try { main.rollback(); main.setAutoCommit(true); } catch (SQLException e) { fail(id, check, "rollback: " + firstLine(e)); }
            }
        }

        // row returns values for a full row of table: every bound column
        // but the key set, strings "x".
        Map<String, Object> row(Line insert, String key, long expires) {
            Map<String, Object> v = new HashMap<>();
            for (String c : insert.cols) {
                Col col = cols.get(c.toLowerCase());
                v.put(c, col != null && col.flag() ? (Object) 1L : col != null && col.numeric() ? (Object) (now - 60000) : "x");
            }
            v.put(insert.cols.get(0), key);
            if (v.containsKey("expires_at")) v.put("expires_at", expires);
            return v;
        }

        Line insertFor(String table) {
            for (Line l : lines) if (l.kind.equals("stmt") && l.isInsert() && l.table.equals(table)) return l;
            // A table written only by an upsert (the revoked-family marker)
            // is seeded with it.
            for (Line l : lines) if (l.kind.equals("stmt") && l.sql.startsWith("MERGE INTO ") && l.table.equals(table)) return l;
            return null;
        }

        void insertChecks(Line ins) {
            String k = key().substring(0, Math.min(64, cols.getOrDefault(ins.cols.get(0).toLowerCase(), new Col(0, 64)).size));
            Map<String, Object> v = row(ins, k, now + 3600000);
            // NULLs round-trip: every string column but the first two is NULL.
            List<String> nulled = new ArrayList<>();
            for (int i = 2; i < ins.cols.size(); i++) {
                String c = ins.cols.get(i);
                Col col = cols.get(c.toLowerCase());
                if (col != null && !col.numeric()) { v.put(c, null); nulled.add(c); }
            }
            try {
                int n = exec(main, ins, v);
                if (n != 1) { fail(id, "insert " + ins.name, n + " rows"); return; }
            } catch (SQLException e) {
                fail(id, "insert " + ins.name, firstLine(e));
                return;
            }
            if (!nulled.isEmpty()) {
                boolean read = false;
                for (Line sel : lines) {
                    if (!sel.kind.equals("stmt") || !sel.sql.startsWith("SELECT") || !sel.table.equals(ins.table)
                            || sel.cols.isEmpty() || !sel.cols.get(0).equals(ins.cols.get(0))) continue;
                    read = true;
                    String check = "NULLs round-trip through " + ins.name + " and " + sel.name;
                    try (PreparedStatement ps = main.prepareStatement(sql(sel))) {
                        Map<String, Object> w = new HashMap<>();
                        w.put(ins.cols.get(0), k);
                        bind(ps, sel, w);
                        try (ResultSet rs = ps.executeQuery()) {
                            if (!rs.next()) { fail(id, check, "row not found"); continue; }
                            List<String> wrong = new ArrayList<>();
                            int seen = 0;
                            for (int i = 1; i <= rs.getMetaData().getColumnCount(); i++) {
                                String name = rs.getMetaData().getColumnLabel(i).toLowerCase();
                                Object got = rs.getObject(i);
                                if (nulled.contains(name)) { seen++; if (got != null) wrong.add(name + "=" + got); }
                                else if (v.containsKey(name) && v.get(name) instanceof String s && !s.equals(got)) wrong.add(name + "=" + got);
                            }
                            if (wrong.isEmpty()) pass(id, check, seen + " NULL columns");
                            else fail(id, check, "read back " + wrong);
                        }
                    } catch (SQLException e) {
                        fail(id, check, firstLine(e));
                    }
                }
                if (!read) System.out.println("NOTE  " + id + "  no statement reads " + ins.table + " back by its key");
            }
            String check = "duplicate key refused by " + ins.name;
            try {
                exec(main, ins, v);
                fail(id, check, "a second row with the same key was inserted");
            } catch (SQLException e) {
                String state = String.valueOf(e.getSQLState());
                if (state.startsWith("23")) pass(id, check, "SQLSTATE " + state);
                else fail(id, check, "SQLSTATE " + state + ", not an integrity violation: " + firstLine(e));
            }
        }

        void oneWinner(Line upd) {
            String check = "one winner of " + upd.name;
            Line ins = insertFor(upd.table);
            if (ins == null) { fail(id, check, "no insert for " + upd.table); return; }
            String k = key();
            try {
                exec(main, ins, row(ins, k, now + 3600000));
                int racers = 8;
                ExecutorService pool = Executors.newFixedThreadPool(racers);
                CountDownLatch ready = new CountDownLatch(racers), go = new CountDownLatch(1);
                List<Future<Integer>> got = new ArrayList<>();
                Map<String, Object> w = new HashMap<>();
                w.put(upd.cols.get(0), k);
                for (int i = 0; i < racers; i++) {
                    got.add(pool.submit(() -> {
                        try (Connection c = DriverManager.getConnection(url)) {
                            String s = sql(upd);
                            try (PreparedStatement ps = c.prepareStatement(s)) {
                                bind(ps, upd, w);
                                ready.countDown();
                                go.await();
                                return ps.executeUpdate();
                            }
                        }
                    }));
                }
                ready.await();
                go.countDown();
                int sum = 0;
                List<Integer> counts = new ArrayList<>();
                for (Future<Integer> f : got) { int n = f.get(); counts.add(n); sum += n; }
                pool.shutdown();
                int again = exec(main, upd, w);
                if (sum == 1 && again == 0) pass(id, check, racers + " concurrent connections got " + counts + ", a later one 0");
                else fail(id, check, racers + " concurrent connections got " + counts + ", a later one " + again);
            } catch (Exception e) {
                fail(id, check, String.valueOf(e.getCause() != null ? e.getCause() : e));
            }
        }

        Line stmt(String name) {
            for (Line l : lines) if (l.kind.equals("stmt") && l.name.equals(name)) return l;
            return null;
        }

        void lease() {
            Line acquire = stmt("leaseAcquire"), release = stmt("leaseRelease");
            if (acquire == null || release == null) { fail(id, "lease", "no leaseAcquire or leaseRelease statement"); return; }
            Object[][] steps = {
                {"taken when free", acquire, "gateway-a", 1},
                {"refused while held", acquire, "gateway-b", 0},
                {"renewed by its holder", acquire, "gateway-a", 1},
                {"not released by another", release, "gateway-b", 0},
                {"released by its holder", release, "gateway-a", 1},
                {"taken by another once released", acquire, "gateway-b", 1},
            };
            for (Object[] s : steps) {
                Line l = (Line) s[1];
                Map<String, Object> v = new HashMap<>();
                v.put("name", "purge");
                v.put("holder", s[2]);
                String check = "lease " + s[0];
                try {
                    int n = exec(main, l, v);
                    if (n == (int) s[3]) pass(id, check, l.name + " by " + s[2] + ": " + n + " row");
                    else fail(id, check, l.name + " by " + s[2] + ": " + n + " rows, want " + s[3]);
                } catch (SQLException e) {
                    fail(id, check, firstLine(e));
                }
            }
        }

        void purge(Line p) {
            String check = "purge " + p.name;
            Line ins = insertFor(p.table);
            if (ins == null) { fail(id, check, "no insert for " + p.table); return; }
            int batch = Integer.parseInt(p.cols.get(1));
            int expired = 2 * batch + 1, live = 2;
            try (Statement st = main.createStatement()) {
                st.executeUpdate("DELETE FROM " + p.table);
                for (int i = 0; i < expired; i++) exec(main, ins, row(ins, key(), now - 3600000 - i));
                for (int i = 0; i < live; i++) exec(main, ins, row(ins, key(), now + 3600000));
                List<Integer> got = new ArrayList<>();
                try (PreparedStatement ps = main.prepareStatement(sql(p))) {
                    for (int i = 0; i < 5; i++) {
                        int n = ps.executeUpdate();
                        got.add(n);
                        if (n == 0) break;
                    }
                }
                int left;
                try (ResultSet rs = st.executeQuery("SELECT COUNT(*) FROM " + p.table + " WHERE expires_at > " + now)) {
                    rs.next();
                    left = rs.getInt(1);
                }
                int all;
                try (ResultSet rs = st.executeQuery("SELECT COUNT(*) FROM " + p.table)) {
                    rs.next();
                    all = rs.getInt(1);
                }
                List<Integer> want = List.of(batch, batch, 1, 0);
                String detail = expired + " expired and " + live + " live rows, batches deleted " + got + ", " + all + " rows left";
                if (got.equals(want) && left == live && all == live) pass(id, check, detail);
                else fail(id, check, detail + "; want " + want + " and the " + live + " live rows");
            } catch (SQLException e) {
                fail(id, check, firstLine(e));
            }
        }
    }
}
