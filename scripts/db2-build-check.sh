#!/usr/bin/env bash
# Builds and tests the SQL store with Db2 support (-tags db2), linking IBM's
# CLI driver. go_ibm_db needs cgo and the driver's headers and libraries:
#
#   IBM_DB_HOME=/opt/ibm/clidriver scripts/db2-build-check.sh
#
# Without IBM_DB_HOME the script takes the clidriver bundled in the ibm-db
# wheel on PyPI (pip download, no install), cached under
# ${XDG_CACHE_HOME:-~/.cache}/caddy-oauth2/ibm-db. A binary built this way
# runs with the clidriver's lib directory found through the rpath set here,
# or on LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

libs=""
if [ -z "${IBM_DB_HOME:-}" ]; then
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/caddy-oauth2/ibm-db"
	if [ ! -f "$cache/x/clidriver/include/sqlcli1.h" ]; then
		rm -rf "$cache"
		mkdir -p "$cache"
		echo "db2-build-check: downloading the ibm-db wheel for its clidriver" >&2
		python3 -m pip download --quiet --no-deps --only-binary=:all: ibm-db -d "$cache"
		wheel=$(ls "$cache"/ibm_db-*.whl | head -n 1)
		python3 -m zipfile -e "$wheel" "$cache/x"
	fi
	IBM_DB_HOME="$cache/x/clidriver"
	# The wheel's libdb2 needs the libraries auditwheel put beside it.
	libs="$cache/x/ibm_db.libs"
fi

export CGO_ENABLED=1
export CGO_CFLAGS="-I$IBM_DB_HOME/include"
export CGO_LDFLAGS="-L$IBM_DB_HOME/lib -Wl,-rpath,$IBM_DB_HOME/lib${libs:+ -Wl,-rpath-link,$libs}"
export LD_LIBRARY_PATH="$IBM_DB_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

go build -tags db2 ./stores/sql/
go vet -tags db2 ./stores/sql/
go test -tags db2 -count=1 -run 'TestDB2|TestStatements|TestPurgeStatements|TestContractServers/db2' ./stores/sql/
echo "db2-build-check: built, linked and ran with IBM_DB_HOME=$IBM_DB_HOME" >&2
