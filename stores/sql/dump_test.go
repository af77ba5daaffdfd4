package sql

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

var dumpDir = flag.String("dump", "", "write every dialect's schema and statements, as the engine builds them, under this directory (scripts/dialects.sh)")

// dumpBatch is the purge batch size in dumped purge statements; small, so
// that a check can watch a purge delete a full batch, then fewer, then 0.
const dumpBatch = 3

// TestDumpStatements writes, with -dump=DIR and for scripts/dialects.sh,
// one file per dialect (DIR/<dialect>.tsv) with the schema file's
// statements and every statement the engine runs, taken from the engine
// itself: the fields of its
// statement set, its purge statement for each table with an expires_at
// column, and its clock expression. Each line is
//
//	kind <TAB> name <TAB> table <TAB> bound columns <TAB> SQL
//
// with kind schema, upgrade (a column version 4 or 5 added), clock, stmt or
// purge. The bound columns name, in
// order, the column each parameter is compared with or inserted into, so
// that the checker can bind values of the right type to statements it has
// never seen.
func TestDumpStatements(t *testing.T) {
	// Without -dump the lines are built and checked, not written, so that a
	// statement the checker could not bind fails here first.
	if *dumpDir != "" {
		if err := os.MkdirAll(*dumpDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Parameters are found in the ? form, which every dialect's statement
	// has in the same order.
	plain, err := NewEngine(nil, "mysql", Options{})
	if err != nil {
		t.Fatal(err)
	}
	pv := reflect.ValueOf(plain.q)
	for _, name := range dialectNames() {
		e, err := NewEngine(nil, name, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		line := func(kind, name, table, cols, q string) {
			// Newlines become spaces: no statement has one inside a literal.
			q = strings.ReplaceAll(q, "\n", " ")
			if strings.ContainsAny(name+table+cols, "\t\n") {
				t.Fatalf("%s %s: tab or newline in a field", kind, name)
			}
			fmt.Fprintf(&b, "%s\t%s\t%s\t%s\t%s\n", kind, name, table, cols, q)
		}
		schema, err := Schema(name, DefaultTablePrefix)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range schema {
			line("schema", fmt.Sprint(i+1), createdTable(s), "", s)
		}
		// The statements create_schema adds to a version 3 schema that the
		// schema file does not hold: the columns of versions 4 and 5.
		up, err := e.upgradeStatements(3)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range up {
			if table, column, ok := addsColumn(s); ok {
				line("upgrade", table+"."+column, table, "", s)
			}
		}
		line("clock", "now", "", "", e.d.nowMillis)
		v := reflect.ValueOf(e.q)
		for i := 0; i < v.NumField(); i++ {
			field := v.Type().Field(i).Name
			cols, err := boundColumns(pv.Field(i).String())
			if err != nil {
				t.Fatalf("%s: %v", field, err)
			}
			q := v.Field(i).String()
			line("stmt", field, statementTable(q), strings.Join(cols, ","), q)
		}
		for _, s := range schema {
			table := createdTable(s)
			if table == "" || !strings.Contains(s, "expires_at") {
				continue
			}
			key := strings.Fields(s[strings.Index(s, "(")+1:])[0]
			line("purge", table, table, fmt.Sprintf("%s,%d", key, dumpBatch), e.purgeStatement(table, key, dumpBatch))
		}
		if *dumpDir == "" {
			continue
		}
		path := filepath.Join(*dumpDir, name+".tsv")
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
}

var (
	insertPattern   = regexp.MustCompile(`^INSERT INTO \w+ \(([^)]*)\) VALUES \(([^)]*)\)`)
	comparedPattern = regexp.MustCompile(`(\w+)\s*(=|<>|<=|>=|<|>)\s*$`)
	tablePattern    = regexp.MustCompile(`\b(?:INTO|FROM|UPDATE)\s+(\w+)`)
)

// boundColumns names the column each ? of a statement is inserted into or
// compared with.
func boundColumns(q string) ([]string, error) {
	var cols []string
	if m := insertPattern.FindStringSubmatch(q); m != nil {
		names := strings.Split(m[1], ", ")
		values := strings.Split(m[2], ", ")
		if len(names) != len(values) {
			return nil, fmt.Errorf("%d columns, %d values: %s", len(names), len(values), q)
		}
		for i, v := range values {
			if v == "?" {
				cols = append(cols, names[i])
			}
		}
	} else {
		for i, r := range q {
			if r != '?' {
				continue
			}
			m := comparedPattern.FindStringSubmatch(q[:i])
			if m == nil {
				return nil, fmt.Errorf("cannot tell the column of parameter %d: %s", len(cols)+1, q)
			}
			cols = append(cols, m[1])
		}
	}
	if len(cols) != strings.Count(q, "?") {
		return nil, fmt.Errorf("found columns for %d of %d parameters: %s", len(cols), strings.Count(q, "?"), q)
	}
	return cols, nil
}

// statementTable names the first table a statement reads or writes.
func statementTable(q string) string {
	if m := tablePattern.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	return ""
}
