#!/usr/bin/env bash
# Checks the SQL store's SQL Server, Oracle and Db2 statements without those
# servers, which cannot be installed here:
#
#   scripts/dialects.sh     # PASS, FAIL, LIMIT lines; last "N passed, M failed"
#
# 1. dumps each dialect's schema file and every statement the engine runs,
#    from the engine itself: go test ./stores/sql -run TestDumpStatements -dump=DIR;
# 2. runs them through JDBC on emulators and checks what they do
#    (scripts/dialects/Check.java): the schema applies, every statement
#    executes, a conditional UPDATE has exactly one winner among concurrent
#    connections, the purge lease is taken, refused while held, renewed and
#    released, NULLs round-trip, a duplicate key is refused, and purge
#    batches delete n, then fewer, then 0, leaving the live rows;
# 3. parses every statement exactly as written, clock expressions included,
#    with sqlfluff in the dialect (scripts/dialects/parse.py).
#
# Emulators: H2 in MODE=MSSQLServer, MODE=Oracle and MODE=DB2, HSQLDB with
# Oracle syntax, and Apache Derby for Db2. Their jars come from Maven Central
# (scripts/dialects/pom.xml) and sqlfluff from PyPI into a venv, both cached
# under ${XDG_CACHE_HOME:-$HOME/.cache}/caddy-oauth2/dialects (DIALECTS_CACHE
# overrides). Needs Go, Java 17+, Maven and python3 with venv. About 25 s
# with a warm cache, a minute cold (on 2 cores).
#
# Exits non-zero on any failure that is not a declared emulator limit (LIMITS
# below). What it cannot catch: driver behaviour, NOCOUNT and other session
# settings, locking and query plans of the real servers (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."

SQLFLUFF_VERSION=4.5.0

# The emulators: id|dialect whose statements it runs|JDBC URL.
TARGETS=(
	"h2-mssql|sqlserver|jdbc:h2:mem:mssql;MODE=MSSQLServer;DB_CLOSE_DELAY=-1"
	"h2-oracle|oracle|jdbc:h2:mem:oracle;MODE=Oracle;DB_CLOSE_DELAY=-1"
	"hsqldb-oracle|oracle|jdbc:hsqldb:mem:oracle;sql.syntax_ora=true"
	"derby-db2|db2|jdbc:derby:memory:db2;create=true"
	"h2-db2|db2|jdbc:h2:mem:db2;MODE=DB2;DB_CLOSE_DELAY=-1"
)

# Declared limits: what an emulator lacks, as target:rewrite. The checker
# runs a statement as written first and applies a rewrite only when the
# emulator refuses it and the limit is declared here; sqlfluff then parses
# the statement as written. A limit no longer needed is reported.
LIMITS=(
	h2-mssql:clock         # H2 has neither DATEDIFF_BIG nor SYSUTCDATETIME: literal clock
	h2-mssql:nocount       # H2 has no SET NOCOUNT: the prefix is dropped
	h2-mssql:clustered     # H2 has no CLUSTERED / NONCLUSTERED: dropped
	h2-mssql:holdlock      # H2 has no table hints: MERGE's WITH (HOLDLOCK) is dropped
	h2-oracle:clock        # H2 has no SYS_EXTRACT_UTC (HSQLDB runs the real clock)
	derby-db2:clock        # Derby has no DAYS, MIDNIGHT_SECONDS or CURRENT TIMEZONE
	derby-db2:codeunits32  # Derby has no string units: VARCHAR(n CODEUNITS32) becomes VARCHAR(n)
	derby-db2:mergevalues  # Derby's MERGE wants a base table as source: the upsert runs as a plain INSERT (H2 MODE=DB2 runs the MERGE)
	h2-db2:clock           # H2 has no BIGINT(), DAYS or CURRENT TIMEZONE
	h2-db2:codeunits32     # H2 knows CHARACTERS and OCTETS, not CODEUNITS32
)
# sqlfluff limits would be sqlfluff-<dialect>:<statement>; none are needed.
PARSER_LIMITS=()

if [[ -n ${DIALECTS_CACHE:-} ]]; then
	cache=$DIALECTS_CACHE
else
	cache=${XDG_CACHE_HOME:-${HOME:?}/.cache}/caddy-oauth2/dialects
fi
jars=$cache/jars
venv=$cache/venv

log() { echo "dialects.sh: $*" >&2; }

# Jars: once, through Maven, from Maven Central.
want_jars=(h2-2.4.240 hsqldb-2.7.4 derby-10.16.1.1 derbyshared-10.16.1.1 derbytools-10.16.1.1)
for j in "${want_jars[@]}"; do
	if [[ ! -f $jars/$j.jar ]]; then
		log "fetching the emulators' jars into $jars"
		mkdir -p "$cache"
		if ! mvn -q -B -f scripts/dialects/pom.xml dependency:copy-dependencies -DoutputDirectory="$jars" >"$cache/mvn.log" 2>&1; then
			cat "$cache/mvn.log" >&2
			log "fetching the jars failed"
			exit 1
		fi
		break
	fi
done

# sqlfluff: once, into a venv outside the repository.
if ! "$venv/bin/python" -c "import sqlfluff, sys; sys.exit(sqlfluff.__version__ != '$SQLFLUFF_VERSION')" 2>/dev/null; then
	log "installing sqlfluff $SQLFLUFF_VERSION into $venv"
	rm -rf "$venv"
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q --disable-pip-version-check "sqlfluff==$SQLFLUFF_VERSION"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

log "dumping the engine's statements"
go test -count=1 -run '^TestDumpStatements$' ./stores/sql -dump="$out/statements" >"$out/dump.log" 2>&1 ||
	{ cat "$out/dump.log" >&2; log "dumping the statements failed"; exit 1; }

status=0
java -Dderby.stream.error.file="$out/derby.log" -cp "$jars/*" scripts/dialects/Check.java "$out/statements" "${TARGETS[@]}" -- "${LIMITS[@]}" | tee "$out/java.log" || status=1
"$venv/bin/python" scripts/dialects/parse.py "$out/statements" "${PARSER_LIMITS[@]}" | tee "$out/parse.log" || status=1

passed=0 failed=0 limits=0
for f in "$out/java.log" "$out/parse.log"; do
	read -r p m l < <(sed -n 's/^[a-z]*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) limits$/\1 \2 \3/p' "$f" | tail -n 1)
	if [[ -z ${p:-} ]]; then
		log "no summary in $(basename "$f"): the checker did not finish"
		failed=$((failed + 1))
		continue
	fi
	passed=$((passed + p)) failed=$((failed + m)) limits=$((limits + l))
	p=""
done
echo "$limits declared emulator limits applied (LIMIT lines above)"
echo "$passed passed, $failed failed"
if [[ $failed -ne 0 || $status -ne 0 ]]; then
	exit 1
fi
