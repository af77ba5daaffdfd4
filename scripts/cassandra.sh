#!/usr/bin/env bash
# Runs a single-node Apache Cassandra 5.0 on 127.0.0.1:9042 for the store
# tests, without Docker: the server jars come from Maven Central (see
# scripts/cassandra/pom.xml) and run on the system Java 17.
#
#   scripts/cassandra.sh start   # fetch jars once, start, wait for CQL (idempotent)
#   scripts/cassandra.sh stop    # stop the node this script started (by its pid)
#   scripts/cassandra.sh status
#   scripts/cassandra.sh env     # prints export OAUTH2_TEST_CASSANDRA_HOSTS=...
#
# Environment:
#   CASSANDRA_CACHE  jar cache, kept between runs
#                    (default ${XDG_CACHE_HOME:-$HOME/.cache}/caddy-oauth2-cassandra,
#                    /var/cache/caddy-oauth2-cassandra without HOME)
#   CASSANDRA_DIR    config, data, log and pid file
#                    (default ${TMPDIR:-/tmp}/caddy-oauth2-cassandra)
#   CASSANDRA_HEAP   JVM heap (default 1G)
#   CASSANDRA_WAIT   seconds to wait for CQL (default 180)
#
# For a cluster of several nodes (tests of consistency levels), run the
# script once per node, each with its own loopback address and folder:
#   CASSANDRA_ADDRESS  node address (default 127.0.0.1)
#   CASSANDRA_SEEDS    seed addresses, comma separated (default 127.0.0.1)
#   CASSANDRA_CLUSTER  cluster name, the same on every node
#                      (default caddy-oauth2-test)
# e.g. CASSANDRA_ADDRESS=127.0.0.2 CASSANDRA_DIR=/tmp/c2 CASSANDRA_HEAP=512M scripts/cassandra.sh start
#
# A three-node cluster (the multi-gateway and replica-outage tests) in one go:
#   scripts/cassandra.sh cluster start        # seed first, then the other two;
#                                             # waits until every node sees 2 peers
#   scripts/cassandra.sh cluster stop         # stop the nodes this script started
#   scripts/cassandra.sh cluster status
#   scripts/cassandra.sh cluster stop-node N  # N = 1..3, by its pid
#   scripts/cassandra.sh cluster start-node N
#   scripts/cassandra.sh cluster env          # export OAUTH2_TEST_CASSANDRA_CLUSTER_HOSTS=...
#   CASSANDRA_CLUSTER_ADDRESSES  the three node addresses, comma separated
#                                (default 127.0.0.2,127.0.0.3,127.0.0.4, as scripts/test.sh
#                                uses, beside the single node on 127.0.0.1; the
#                                first is the seed)
#   CASSANDRA_CLUSTER_DIR        one folder per node below it (default
#                                ${TMPDIR:-/tmp}/caddy-oauth2-cassandra-cluster-<first address>,
#                                so clusters on other addresses never share data)
#   CASSANDRA_CLUSTER_HEAP       JVM heap per node (default 640M)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
if [[ -n ${CASSANDRA_CACHE:-} ]]; then
	cache=$CASSANDRA_CACHE
elif [[ -n ${XDG_CACHE_HOME:-} ]]; then
	cache=$XDG_CACHE_HOME/caddy-oauth2-cassandra
elif [[ -n ${HOME:-} ]]; then
	cache=$HOME/.cache/caddy-oauth2-cassandra
else
	cache=/var/cache/caddy-oauth2-cassandra
fi
dir=${CASSANDRA_DIR:-${TMPDIR:-/tmp}/caddy-oauth2-cassandra}
heap=${CASSANDRA_HEAP:-1G}
wait_s=${CASSANDRA_WAIT:-180}
host=${CASSANDRA_ADDRESS:-127.0.0.1}
seeds=${CASSANDRA_SEEDS:-127.0.0.1}
cluster=${CASSANDRA_CLUSTER:-caddy-oauth2-test}
port=9042
pidfile=$dir/cassandra.pid
log=$dir/out.log

say() { echo "cassandra.sh: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

our_pid() {
	[[ -s $pidfile ]] || return 1
	local pid
	pid=$(<"$pidfile")
	kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid: it must still be our CassandraDaemon.
	grep -q CassandraDaemon "/proc/$pid/cmdline" 2>/dev/null || return 1
	echo "$pid"
}

# install installs Debian packages when run as root (CI), else says what is
# missing.
install() {
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		say "installing $*"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null
	else
		say "missing $*; install it (Debian: apt-get install $*)"
		exit 1
	fi
}

fetch() {
	if [[ -f $cache/lib/.complete ]]; then return; fi
	command -v mvn >/dev/null || install maven
	say "fetching cassandra-all jars into $cache/lib (once)"
	mkdir -p "$cache/lib"
	# The parent pom names system-scoped JMC artifacts; Maven may log an
	# ERROR about them, which does not stop the copy.
	mvn -B -q -f "$here/cassandra/pom.xml" \
		org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$cache/lib" </dev/null
	ls "$cache"/lib/cassandra-all-*.jar >/dev/null
	touch "$cache/lib/.complete"
}

configure() {
	mkdir -p "$dir"/{data,commitlog,hints,saved_caches,cdc_raw}
	cat >"$dir/cassandra.yaml" <<YAML
cluster_name: $cluster
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
num_tokens: 1
listen_address: $host
rpc_address: $host
storage_port: 7000
native_transport_port: $port
start_native_transport: true
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$seeds"
commitlog_sync: periodic
commitlog_sync_period: 10s
commitlog_segment_size: 5MiB
auto_snapshot: false
incremental_backups: false
cdc_enabled: false
auto_bootstrap: false
data_file_directories:
  - $dir/data
commitlog_directory: $dir/commitlog
hints_directory: $dir/hints
saved_caches_directory: $dir/saved_caches
cdc_raw_directory: $dir/cdc_raw
YAML
	cat >"$dir/logback.xml" <<XML
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$dir/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
XML
}

# Cassandra's conf/jvm17-server.options, plus what an embedded start needs.
jvm_flags() {
	local e o
	echo -Djdk.attach.allowAttachSelf=true -Dio.netty.tryReflectionSetAccessible=true
	for e in java.base/jdk.internal.misc java.management.rmi/com.sun.jmx.remote.internal.rmi \
		java.rmi/sun.rmi.registry java.rmi/sun.rmi.server java.sql/java.sql java.base/java.lang.ref \
		jdk.unsupported/sun.misc jdk.compiler/com.sun.tools.javac.file jdk.attach/sun.tools.attach \
		java.management/com.sun.jmx.remote.security; do
		echo "--add-exports $e=ALL-UNNAMED"
	done
	for o in java.base/java.lang.module java.base/jdk.internal.loader java.base/jdk.internal.ref \
		java.base/jdk.internal.reflect java.base/jdk.internal.math java.base/jdk.internal.module \
		java.base/jdk.internal.util.jar jdk.management/com.sun.management.internal java.base/sun.nio.ch \
		java.base/java.io java.base/java.lang.reflect jdk.compiler/com.sun.tools.javac java.base/java.lang \
		java.base/java.util java.base/java.nio java.base/java.nio.charset; do
		echo "--add-opens $o=ALL-UNNAMED"
	done
}

# cql runs a real query through the Go driver; exits non-zero if it fails.
cql() {
	(cd "$repo" && go run ./scripts/cassandra/cqlping -hosts "$host:$port")
}

start() {
	if pid=$(our_pid); then
		say "already running (pid $pid)"
	elif port_open; then
		say "something already answers on $host:$port; not starting another node"
		cql
		return
	else
		command -v java >/dev/null || install openjdk-17-jre-headless
		fetch
		configure
		local jamm
		jamm=$(ls "$cache"/lib/jamm-*.jar | head -n1)
		say "starting Cassandra on $host:$port (dir $dir, log $log)"
		# shellcheck disable=SC2046 # jvm_flags words are meant to split
		nohup java -Xms"$heap" -Xmx"$heap" -Xss256k -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
			-Djava.net.preferIPv4Stack=true \
			-javaagent:"$jamm" $(jvm_flags) \
			-Dcassandra.config="file://$dir/cassandra.yaml" -Dcassandra-foreground=yes \
			-Dcassandra.storagedir="$dir/data" -Dlogback.configurationFile="$dir/logback.xml" \
			-Dcassandra.unsafesystem=true -Dcassandra.skip_wait_for_gossip_to_settle=0 \
			-Dcassandra.ring_delay_ms=1000 -Dcassandra.load_ring_state=false \
			-cp "$cache/lib/*" org.apache.cassandra.service.CassandraDaemon \
			</dev/null >"$log" 2>&1 &
		pid=$!
		echo "$pid" >"$pidfile"
	fi
	local t0=$SECONDS
	until port_open; do
		if ! kill -0 "$pid" 2>/dev/null; then
			say "Cassandra (pid $pid) died while starting; last lines of $log and $dir/system.log:"
			tail -n 40 "$log" >&2 || true
			tail -n 40 "$dir/system.log" >&2 || true
			rm -f "$pidfile"
			exit 1
		fi
		if ((SECONDS - t0 > wait_s)); then
			say "no CQL on $host:$port after ${wait_s}s; last lines of $log:"
			tail -n 40 "$log" >&2 || true
			exit 1
		fi
		sleep 1
	done
	cql
	say "ready on $host:$port (pid $pid, $((SECONDS - t0))s)"
}

stop() {
	local pid
	if ! pid=$(our_pid); then
		say "not running (no live pid in $pidfile)"
		rm -f "$pidfile"
		return
	fi
	kill "$pid"
	for _ in $(seq 60); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 1
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "pid $pid ignored SIGTERM for 60s; sending SIGKILL"
		kill -9 "$pid"
	fi
	rm -f "$pidfile"
	say "stopped (pid $pid)"
}

status() {
	local pid
	if pid=$(our_pid); then
		if port_open; then say "running (pid $pid), CQL on $host:$port"; else say "starting (pid $pid)"; fi
	elif port_open; then
		say "not started by this script, but $host:$port answers"
	else
		say "not running"
		return 3
	fi
}

# cluster runs the single-node commands above once per node, each in a
# child of this script with its own address, folder and heap.
cluster() {
	local addrs cdir cheap
	IFS=, read -r -a addrs <<<"${CASSANDRA_CLUSTER_ADDRESSES:-127.0.0.2,127.0.0.3,127.0.0.4}"
	cdir=${CASSANDRA_CLUSTER_DIR:-${TMPDIR:-/tmp}/caddy-oauth2-cassandra-cluster-${addrs[0]}}
	cheap=${CASSANDRA_CLUSTER_HEAP:-640M}
	node() { # node N command
		local i=$(($1 - 1))
		if ((i < 0 || i >= ${#addrs[@]})); then
			say "no node $1 (nodes 1..${#addrs[@]})"
			exit 2
		fi
		CASSANDRA_ADDRESS=${addrs[$i]} CASSANDRA_SEEDS=${addrs[0]} CASSANDRA_DIR=$cdir/node$1 \
			CASSANDRA_HEAP=$cheap CASSANDRA_CLUSTER=${CASSANDRA_CLUSTER:-caddy-oauth2-cluster} \
			"${BASH_SOURCE[0]}" "$2"
	}
	hostlist() {
		local a out=
		for a in "${addrs[@]}"; do out+=${out:+,}$a:$port; done
		echo "$out"
	}
	case ${1:-} in
	start)
		fetch
		node 1 start
		# The others join through the seed; auto_bootstrap is off, so they
		# can start together.
		local n pids=()
		for ((n = 2; n <= ${#addrs[@]}; n++)); do
			node "$n" start &
			pids+=($!)
		done
		for n in "${pids[@]}"; do wait "$n"; done
		(cd "$repo" && go run ./scripts/cassandra/cqlping -hosts "$(hostlist)" -peers $((${#addrs[@]} - 1)) -wait "${wait_s}s")
		;;
	stop)
		for ((n = ${#addrs[@]}; n >= 1; n--)); do node "$n" stop; done
		;;
	status)
		local rc=0
		for ((n = 1; n <= ${#addrs[@]}; n++)); do node "$n" status || rc=$?; done
		return "$rc"
		;;
	stop-node) node "${2:?node number}" stop ;;
	start-node)
		node "${2:?node number}" start
		(cd "$repo" && go run ./scripts/cassandra/cqlping -hosts "$(hostlist)" -peers $((${#addrs[@]} - 1)) -wait "${wait_s}s")
		;;
	env) echo "export OAUTH2_TEST_CASSANDRA_CLUSTER_HOSTS=$(hostlist)" ;;
	*)
		echo "usage: $0 cluster start|stop|status|env|stop-node N|start-node N" >&2
		exit 2
		;;
	esac
}

case ${1:-} in
cluster)
	shift
	cluster "$@"
	;;
start) start ;;
stop) stop ;;
status) status ;;
env) echo "export OAUTH2_TEST_CASSANDRA_HOSTS=$host:$port" ;;
*)
	echo "usage: $0 start|stop|status|env|cluster ..." >&2
	exit 2
	;;
esac
