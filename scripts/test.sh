#!/usr/bin/env bash
# Runs the whole test suite against real servers: installs and starts MariaDB
# and PostgreSQL (Debian packages) and a single-node Cassandra (jars from
# Maven Central) on 127.0.0.1, installs Debian's Chromium for the consent
# page tests, starts panva's oidc-provider from npm as a third-party
# authorization server (scripts/oidc-provider.sh), installs panva's
# oauth4webapi from npm as a third-party client (scripts/oauth4webapi.sh) and
# the official MCP SDK (scripts/mcp-sdk.sh), openid-client as a third-party
# OpenID Connect relying party (scripts/openid-client.sh), checks the SQL
# Server, Oracle and Db2 statements on emulators
# (scripts/dialects.sh), then runs every Go test under -race with all server
# variables set, so nothing is skipped. Needs root for apt-get.
# A three-node Cassandra cluster on 127.0.0.2-127.0.0.4 (CASSANDRA_CLUSTER_ADDRESSES)
# then runs the multi-gateway and replica-outage tests, which stop and
# restart its nodes, after the rest, so they never disturb other tests.
# The servers stay up for the next run; stop them with
# `scripts/services.sh stop`, `scripts/cassandra.sh stop`,
# `scripts/cassandra.sh cluster stop` and `scripts/oidc-provider.sh stop`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "starting MariaDB and PostgreSQL"
scripts/services.sh start
eval "$(scripts/services.sh env)"

# Before the Cassandra JVMs, which keep both cores busy while they boot.
step "starting oidc-provider (the external issuer)"
scripts/oidc-provider.sh start
eval "$(scripts/oidc-provider.sh env)"

step "starting Cassandra"
scripts/cassandra.sh start
eval "$(scripts/cassandra.sh env)"

# The cluster tests stop nodes, so they get a cluster of their own beside
# the single node the other tests keep (4 JVMs, about 5 GB resident).
step "starting a three-node Cassandra cluster"
export CASSANDRA_CLUSTER_ADDRESSES=${CASSANDRA_CLUSTER_ADDRESSES:-127.0.0.2,127.0.0.3,127.0.0.4}
scripts/cassandra.sh cluster start
cluster_env=$(scripts/cassandra.sh cluster env)
cluster_tests='^(TestFleetCassandra|TestFleetFeedCassandra|TestReplicaOutage)$'

step "installing Chromium for the consent page tests"
scripts/chromium.sh
eval "$(scripts/chromium.sh env)"

step "installing oauth4webapi (the third-party client of the registration and FAPI 2.0 tests)"
scripts/oauth4webapi.sh install
eval "$(scripts/oauth4webapi.sh env)"

step "installing @modelcontextprotocol/sdk (the MCP server and client of the MCP test)"
scripts/mcp-sdk.sh install
eval "$(scripts/mcp-sdk.sh env)"

step "installing openid-client (the relying party of the OpenID Connect tests)"
scripts/openid-client.sh install
eval "$(scripts/openid-client.sh env)"

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
go test -race -count=1 -timeout 40m -v -skip "$cluster_tests" ./... >"$log" 2>&1
status=$?

step "multi-gateway and replica-outage tests on the three-node cluster"
(
	eval "$cluster_env"
	go test -race -count=1 -timeout 20m -v -p 1 -run "$cluster_tests" . ./stores/cassandra || exit
	# The replica-outage table at every consistency level, one node down,
	# then two; the nodes come back whatever happens.
	trap 'scripts/cassandra.sh cluster start-node 3 & scripts/cassandra.sh cluster start-node 2; wait' EXIT
	scripts/cassandra.sh cluster stop-node 3 &&
		OAUTH2_TEST_CASSANDRA_NODES_DOWN=1 go test -count=1 -v -run '^TestReplicaOutage$' ./stores/cassandra &&
		scripts/cassandra.sh cluster stop-node 2 &&
		OAUTH2_TEST_CASSANDRA_NODES_DOWN=2 go test -count=1 -v -run '^TestReplicaOutage$' ./stores/cassandra
) >>"$log" 2>&1
cstatus=$?
if [ "$status" -eq 0 ]; then status=$cstatus; fi
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
