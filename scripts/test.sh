#!/usr/bin/env bash
# Runs the whole test suite against real servers: installs and starts MariaDB
# and PostgreSQL (Debian packages) and a single-node Cassandra (jars from
# Maven Central) on 127.0.0.1, installs Debian's Chromium for the consent
# page tests, checks the SQL Server, Oracle and Db2 statements on emulators
# (scripts/dialects.sh), then runs every Go test under -race with all server
# variables set, so nothing is skipped. Needs root for apt-get.
# The servers stay up for the next run; stop them with
# `scripts/services.sh stop` and `scripts/cassandra.sh stop`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "starting MariaDB and PostgreSQL"
scripts/services.sh start
eval "$(scripts/services.sh env)"

step "starting Cassandra"
scripts/cassandra.sh start
eval "$(scripts/cassandra.sh env)"

step "installing Chromium for the consent page tests"
scripts/chromium.sh
eval "$(scripts/chromium.sh env)"

step "gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...

if [ -x scripts/db2-build-check.sh ]; then
	step "building with the db2 tag against IBM's CLI driver"
	scripts/db2-build-check.sh
fi

step "SQL Server, Oracle and Db2 statements on emulators"
scripts/dialects.sh

step "go test -race ./..."
log=$(mktemp)
set +e
go test -race -count=1 -timeout 40m -v ./... >"$log" 2>&1
status=$?
set -e
# The verbose log is long: show each package's result, every failure with its
# output, and every skip (only servers that cannot be installed here, SQL
# Server, Oracle and DB2, may skip).
grep -E '^(ok|FAIL|PASS|panic:|--- FAIL|--- SKIP|=== NAME|\s+--- (FAIL|SKIP))' "$log" | grep -v '^=== NAME' || true
if [ "$status" -ne 0 ]; then
	echo; echo "==> failures in full:"
	awk '/^=== RUN/{buf=""} {buf=buf $0 "\n"} /--- FAIL/{printf "%s", buf; buf=""}' "$log" | tail -n 400
	grep -E '^(panic:|fatal error:)' -A 40 "$log" | head -n 200 || true
fi
passed=$(grep -cE '^\s*--- PASS' "$log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$log" || true)
echo "full log: $log"
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
