#!/usr/bin/env bash
# Side-by-side benchmarks of caddy-oauth2 (issue 5): guard overhead, token
# issuance and introspection against Ory Hydra v2.3.0, purging a large backlog,
# the cache store's resident memory, and the guard under a wrong-secret flood
# (issue 8), and under a flood of made-up opaque tokens with two introspecting
# issuers configured (issue 16). Everything listens on 127.0.0.1.
#
#   bench/run.sh                         # every scenario
#   bench/run.sh guard issuance          # some of them
#   scenarios: guard issuance introspection purge memory bruteforce micro fleet jwt
#              introspection-flood dpop
#
# It builds Caddy with the plugin and the helpers under bench/, builds Hydra
# once into $BENCH_CACHE (a throwaway module outside the repository), installs
# wrk from Debian if absent, starts MariaDB/PostgreSQL (scripts/services.sh)
# and Cassandra (scripts/cassandra.sh) when a scenario needs them and they are
# not already up, and stops, by pid, everything it started (the database
# servers too, unless BENCH_KEEP_SERVICES=1). It prints a table and one ratio
# line per measurement; with BENCH_WRITE_RESULTS=1 it also writes
# bench/RESULTS.md, keeping the sections recorded by hand below its marker
# line.
#
# Knobs (environment):
#   BENCH_DURATION  seconds per wrk run (default 5)
#   BENCH_ROUNDS    alternating rounds per comparison (default 3)
#   BENCH_CONNS     wrk connections (default 32); BENCH_THREADS wrk threads (default 1)
#   BENCH_STORES    stores to measure (default "cache sqlite mariadb postgres cassandra")
#   BENCH_BCRYPT_COST  client-secret bcrypt cost on both sides (default 10)
#   BENCH_PURGE_ROWS   expired rows to purge (default 1000000)
#   BENCH_MEM_TOKENS   live tokens for the memory scenario (default 1000000)
#   BENCH_FLOOD_CONNS  connections of the wrong-secret and made-up-token floods (default 20)
#   BENCH_POOL      distinct made-up tokens of the introspection flood (default 1000)
#   BENCH_FLEET_TOKENS revocations timed in the fleet scenario (default 100)
#   BENCH_CACHE     where the Caddy and Hydra binaries are kept (default /var/cache/caddy-oauth2-bench)
#   BENCH_PROFILE   1: a CPU profile of Caddy per guard configuration
#   BENCH_PURGE_DBMS   databases of the purge scenario (default "mariadb postgres")
#   BENCH_PURGE_IDLE   0 skips the purge without traffic (default 1)
#   BENCH_PURGE_MAX    seconds the purge under load may take (default 300)
#   BENCH_PURGE_HYDRA  0 skips hydra janitor (default 1)
#   BENCH_PIN       1 (default on 2+ CPUs): the server under test (Caddy, Hydra) on
#                   CPU 0, wrk and the upstream on CPU 1, so the load generator does
#                   not steal from what it measures; databases are not pinned
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache_dir=${BENCH_CACHE:-/var/cache/caddy-oauth2-bench}
run=$(mktemp -d "${TMPDIR:-/tmp}/caddy-oauth2-bench.XXXXXX")
DUR=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-32}
THREADS=${BENCH_THREADS:-1}
STORES=${BENCH_STORES:-"cache sqlite mariadb postgres cassandra"}
COST=${BENCH_BCRYPT_COST:-10}
PURGE_ROWS=${BENCH_PURGE_ROWS:-1000000}
MEM_TOKENS=${BENCH_MEM_TOKENS:-1000000}
HYDRA_VERSION=v2.3.0
SERVER_CPU=() LOAD_CPU=()
if [[ ${BENCH_PIN:-1} == 1 ]] && (($(nproc) >= 2)) && command -v taskset >/dev/null; then
	SERVER_CPU=(taskset -c 0) LOAD_CPU=(taskset -c 1)
fi
# Hydra's go.mod replaces pop with Ory's fork at this version.
HYDRA_POP=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b

ADMIN=127.0.0.1:23019 ADMIN2=127.0.0.1:23020
AUTH=127.0.0.1:23080 PLAIN=127.0.0.1:23081 GUARDED=127.0.0.1:23082 SPARE=127.0.0.1:23083
UPSTREAM=127.0.0.1:23090
INTRO_A=127.0.0.1:23091 INTRO_B=127.0.0.1:23092
HYDRA_PUBLIC=127.0.0.1:23444 HYDRA_ADMIN=127.0.0.1:23445
TOKEN_SECRET=bench-token-secret-0123456789abcdef0123456789
CLIENT=bench CLIENT_SECRET=bench-secret
BASIC="Basic $(printf %s "$CLIENT:$CLIENT_SECRET" | base64 -w0)"

say() { echo "bench: $*" >&2; }

# ---- processes ---------------------------------------------------------------

PIDS=()
STARTED_SERVICES=()

# start NAME CMD... runs CMD in the background, logging to $run/NAME.log; the
# pid is in LAST_PID and is stopped at exit at the latest.
start() {
	local name=$1
	shift
	"$@" >"$run/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# stop PID ends one process this script started: TERM, then KILL after 10s.
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	local keep=() p
	for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

cleanup() {
	local p s
	for p in "${PIDS[@]}"; do stop "$p"; done
	if [[ ${BENCH_KEEP_SERVICES:-0} != 1 ]]; then
		for s in "${STARTED_SERVICES[@]}"; do
			say "stopping $s (this run started it)"
			"$repo/scripts/$s" stop >/dev/null 2>&1
		done
	fi
	say "logs and configs in $run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

# wait_port ADDR PID [SECONDS]: until ADDR accepts connections, or PID dies.
wait_port() {
	local addr=$1 pid=$2 n=$((${3:-30} * 10))
	while ((n-- > 0)); do
		port_open "$addr" && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# ---- building ----------------------------------------------------------------

CADDY=$cache_dir/caddy
build() {
	mkdir -p "$cache_dir"
	command -v wrk >/dev/null || {
		say "installing wrk"
		DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >"$run/apt.log" 2>&1 ||
			{ apt-get update >>"$run/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >>"$run/apt.log" 2>&1; } ||
			{ say "cannot install wrk, see $run/apt.log"; exit 1; }
	}
	say "building Caddy with the plugin and the bench helpers"
	(cd "$repo" && go build -o "$CADDY" ./cmd/caddy &&
		go build -o "$cache_dir/upstream" ./bench/upstream &&
		go build -o "$cache_dir/sqlexec" ./bench/sqlexec &&
		go build -o "$cache_dir/mint" ./bench/mint &&
		go build -o "$cache_dir/propagation" ./bench/propagation &&
		go build -o "$cache_dir/hashsecret" ./bench/hashsecret &&
		go build -o "$cache_dir/introspector" ./bench/introspector) || { say "build failed"; exit 1; }
	SECRET_HASH=$("$cache_dir/hashsecret" -cost "$COST" -secret "$CLIENT_SECRET")
}

HYDRA=$cache_dir/hydra/hydra
# build_hydra builds Hydra once, in a module of its own outside the repository.
build_hydra() {
	if [[ -x $HYDRA ]] && go version -m "$HYDRA" 2>/dev/null | grep -q "github.com/ory/hydra/v2[[:space:]]*$HYDRA_VERSION"; then
		return 0
	fi
	say "building Ory Hydra $HYDRA_VERSION into $cache_dir/hydra (several minutes, once)"
	mkdir -p "$cache_dir/hydra"
	(
		cd "$cache_dir/hydra" || exit 1
		[[ -f go.mod ]] || go mod init hydrabench >/dev/null 2>&1
		go mod edit -replace "github.com/gobuffalo/pop/v6=$HYDRA_POP" &&
			go get -tool "github.com/ory/hydra/v2@$HYDRA_VERSION" &&
			go build -o hydra.tmp github.com/ory/hydra/v2 && mv hydra.tmp hydra
	) >"$run/hydra-build.log" 2>&1 || { say "building Hydra failed, see $run/hydra-build.log"; return 1; }
}

# ---- database servers ----------------------------------------------------------

# need_sql makes MariaDB and PostgreSQL available and sets MYSQL_DSN, PG_DSN.
need_sql() {
	[[ -n ${PG_DSN:-} ]] && return 0
	local s=$repo/scripts/services.sh
	[[ -x $s ]] || { say "scripts/services.sh is missing: no MariaDB/PostgreSQL"; return 1; }
	if ! port_open 127.0.0.1:3306 || ! port_open 127.0.0.1:5432; then
		say "starting MariaDB and PostgreSQL (scripts/services.sh start)"
		"$s" start >"$run/services.log" 2>&1 || { say "services.sh start failed, see $run/services.log"; return 1; }
		STARTED_SERVICES+=(services.sh)
	fi
	eval "$("$s" env)"
	MYSQL_DSN=${OAUTH2_TEST_MYSQL_DSN:-}
	PG_DSN=${OAUTH2_TEST_POSTGRES_DSN:-}
	[[ -n $MYSQL_DSN && -n $PG_DSN ]] || { say "services.sh env gave no DSNs"; return 1; }
}

need_cassandra() {
	[[ -n ${CASSANDRA_HOSTS:-} ]] && return 0
	local s=$repo/scripts/cassandra.sh
	[[ -x $s ]] || { say "scripts/cassandra.sh is missing: no Cassandra"; return 1; }
	if ! port_open 127.0.0.1:9042; then
		say "starting Cassandra (scripts/cassandra.sh start, up to a few minutes)"
		"$s" start >"$run/cassandra.log" 2>&1 || { say "cassandra.sh start failed, see $run/cassandra.log"; return 1; }
		STARTED_SERVICES+=(cassandra.sh)
	fi
	eval "$("$s" env)"
	CASSANDRA_HOSTS=${OAUTH2_TEST_CASSANDRA_HOSTS:-127.0.0.1:9042}
	# create_schema makes the tables, not the keyspace.
	sqlx -driver cql -dsn "$CASSANDRA_HOSTS" -timeout 60s \
		"CREATE KEYSPACE IF NOT EXISTS oauth2_bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}" ||
		{ say "cannot create keyspace oauth2_bench"; CASSANDRA_HOSTS=; return 1; }
}

sqlx() { "$cache_dir/sqlexec" "$@"; }

# ---- Caddy -------------------------------------------------------------------

# store_block STORE [PREFIX] prints the access_token_store line(s) for STORE.
store_block() {
	local prefix=${2:-bench_}
	case $1 in
	cache) printf 'access_token_store cache {\n\t\t\tmax_memory %s\n\t\t}\n' "${CACHE_MB:-256}" ;;
	sqlite) printf 'access_token_store sql {\n\t\t\tdialect sqlite\n\t\t\tdsn %s\n\t\t\tcreate_schema\n\t\t}\n' "$run/bench.db" ;;
	mariadb) printf 'access_token_store sql {\n\t\t\tdialect mysql\n\t\t\tdsn {env.BENCH_MYSQL_DSN}\n\t\t\ttable_prefix %s\n\t\t\tcreate_schema\n\t\t}\n' "$prefix" ;;
	postgres) printf 'access_token_store sql {\n\t\t\tdialect postgres\n\t\t\tdsn {env.BENCH_PG_DSN}\n\t\t\ttable_prefix %s\n\t\t\tcreate_schema\n\t\t}\n' "$prefix" ;;
	cassandra) printf 'access_token_store cassandra {\n\t\t\thosts %s\n\t\t\tkeyspace oauth2_bench\n\t\t\tcreate_schema\n\t\t}\n' "${CASSANDRA_HOSTS//,/ }" ;;
	esac
}

need_store() {
	case $1 in
	mariadb | postgres) need_sql ;;
	cassandra) need_cassandra ;;
	esac
}

# caddyfile STORE VC [PURGE_EVERY] [PREFIX] [ADMIN] [FORMAT]: the auth server, a
# plain and a guarded route to the same upstream; FORMAT is the
# access_token_format (default opaque).
caddyfile() {
	local store=$1 vc=$2 purge=${3:-1h} prefix=${4:-bench_} admin=${5:-$ADMIN} format=${6:-opaque}
	cat <<EOF
{
	admin $admin
	auto_https off
	persist_config off
	log {
		level WARN
	}
	oauth2 {
		token_secret $TOKEN_SECRET
		$(store_block "$store" "$prefix")
		authorization_code_store cache
		purge_every $purge
		access_token_format $format
		$([[ $vc == 0 ]] || echo "validation_cache 5s")
		client $CLIENT {
			secret_hash $SECRET_HASH
			grant_types client_credentials
			scopes read
		}
	}
}

http://$AUTH {
	oauth2_server
}

http://$PLAIN {
	reverse_proxy $UPSTREAM
}

http://$GUARDED {
	oauth2_guard {
		scopes read
	}
	reverse_proxy $UPSTREAM
}
EOF
}

# purger_caddyfile DBMS PREFIX [EVERY]: only the app, purging every EVERY
# (default 5s, each run bounded by that too), and a dummy site; it logs each
# purge batch (debug level), summed up by purge_batches.
purger_caddyfile() {
	caddyfile "$1" 0 "${3:-5s}" "$2" "$ADMIN2" | sed -e '/^http:\/\//,/^}/d' -e 's/^\t\tlevel WARN$/\t\tlevel DEBUG/'
	printf 'http://%s {\n\trespond ok\n}\n' "$SPARE"
}

# start_caddy NAME CADDYFILE: CADDY_PID is set on success.
start_caddy() {
	local name=$1 cfg=$run/$1.Caddyfile admin site
	printf '%s\n' "$2" >"$cfg"
	admin=$(awk '/^\tadmin /{print $2; exit}' "$cfg")
	start "$name" "${SERVER_CPU[@]}" env BENCH_MYSQL_DSN="${MYSQL_DSN:-}" BENCH_PG_DSN="${PG_DSN:-}" GOMAXPROCS="${BENCH_GOMAXPROCS:-}" \
		"$CADDY" run --config "$cfg" --adapter caddyfile
	CADDY_PID=$LAST_PID
	if ! wait_port "$admin" "$CADDY_PID" 60; then
		say "Caddy ($name) did not start:"
		tail -5 "$run/$name.log" >&2
		stop "$CADDY_PID"
		return 1
	fi
	# The app starts stores (schema checks) before the servers listen.
	site=$(awk '/^http:\/\//{sub("http://", "", $1); print $1; exit}' "$cfg")
	if [[ -n $site ]] && ! wait_port "$site" "$CADDY_PID" 60; then
		say "Caddy ($name) did not listen:"
		tail -5 "$run/$name.log" >&2
		stop "$CADDY_PID"
		return 1
	fi
}

start_upstream() {
	port_open "$UPSTREAM" && return 0
	start upstream "${LOAD_CPU[@]}" "$cache_dir/upstream" -addr "$UPSTREAM"
	wait_port "$UPSTREAM" "$LAST_PID" 10
}

# our_token: a fresh client_credentials access token from our server.
our_token() {
	curl -sf -u "$CLIENT:$CLIENT_SECRET" -d grant_type=client_credentials -d scope=read "http://$AUTH/oauth2/token" |
		jq -r .access_token
}

# ---- load and results ----------------------------------------------------------

# cpu_ticks PID: utime + stime of PID, all threads, in clock ticks.
cpu_ticks() {
	[[ -n ${1:-} && -r /proc/$1/stat ]] || { echo 0; return; }
	# The command name, field 2, may hold spaces: count from its ")".
	sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
HZ=$(getconf CLK_TCK)

# db_pids STORE: the database server processes serving STORE at the address
# the bench uses (PostgreSQL: the postmaster and its backends).
db_pids() {
	local addr pid
	case $1 in
	mariadb) addr=127.0.0.1:3306 ;;
	postgres) addr=127.0.0.1:5432 ;;
	cassandra) addr=${CASSANDRA_HOSTS%%,*} ;;
	*) return 0 ;;
	esac
	pid=$(ss -Hltnp "sport = :${addr##*:}" 2>/dev/null | grep -F "${addr%:*}:" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
	[[ -n $pid ]] || return 0
	echo "$pid"
	[[ $1 == postgres ]] && pgrep -P "$pid"
}

# db_ticks STORE: "pid ticks" lines for db_pids.
db_ticks() {
	local p
	for p in $(db_pids "$1"); do echo "$p $(cpu_ticks "$p")"; done
}

# load URL [SECONDS] runs wrk; the request comes from BENCH_METHOD/BODY/AUTH.
# Prints "req/s p50µs p99µs non2xx sockerr requests cpuµs/req", or nothing
# on failure; the last is the CPU time (user + system) the server process
# LOAD_PID (default: CADDY_PID) spent over the run, per request: on a
# shared VM it swings less than req/s. With LOAD_DB set to a store, an
# eighth field is the CPU µs per request of that store's database server
# (which other clients of the server may inflate).
load() {
	local pid=${LOAD_PID:-${CADDY_PID:-}} c0 c1 out d0= d1=
	c0=$(cpu_ticks "$pid")
	[[ -n ${LOAD_DB:-} ]] && d0=$(db_ticks "$LOAD_DB")
	out=$("${LOAD_CPU[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${2:-$DUR}s" --timeout 10s -s "$here/wrk.lua" "$1" 2>>"$run/wrk.err" |
		awk '/^RESULT/{print $2, $3, $4, $5, $6, $7}')
	c1=$(cpu_ticks "$pid")
	[[ -n ${LOAD_DB:-} ]] && d1=$(db_ticks "$LOAD_DB")
	[[ -n $out ]] || return 0
	awk -v o="$out" -v d=$((c1 - c0)) -v hz="$HZ" -v p="$pid" -v d0="$d0" -v d1="$d1" -v db="${LOAD_DB:-}" 'BEGIN {
		split(o, v, " ")
		cpu = (p == "" || v[6] == 0) ? 0 : d / hz * 1e6 / v[6]
		if (db == "") { printf "%s %.1f\n", o, cpu; exit }
		n = split(d0, a, "\n"); for (i = 1; i <= n; i++) { split(a[i], f, " "); t0[f[1]] = f[2] }
		n = split(d1, a, "\n"); for (i = 1; i <= n; i++) { split(a[i], f, " "); dt += f[2] - t0[f[1]] }
		printf "%s %.1f %.1f\n", o, cpu, v[6] == 0 ? 0 : dt / hz * 1e6 / v[6]
	}'
}

RESULTS=$run/results.tsv
RATIOS=$run/ratios.txt
: >"$RESULTS"
: >"$RATIOS"
# record SCENARIO CONFIG VARIANT "wrk result"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }
# row KEY MEASURE VERDICT: a line of issue 12's table (see issue_table).
TABLE=$run/table.tsv
: >"$TABLE"
row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$TABLE"; }
ratio() {
	echo "$*" >>"$RATIOS"
	echo "  => $*" >&2
}

# summarize FILE: mean req/s, median p50, median p99 (ms), total non-2xx
# over rounds, median CPU µs per request.
summarize() {
	sort -k1,1n "$1" | awk '
	{ rps += $1; p50[NR] = $2; p99[NR] = $3; bad += $4 + $5; cpu[NR] = $7 + 0; db[NR] = $8 + 0 }
	END {
		if (NR == 0) { print "0 0 0 0 0 0"; exit }
		n = asort(p50); asort(p99); asort(cpu); asort(db)
		m = int((n + 1) / 2)
		printf "%.0f %.2f %.2f %d %.1f %.1f\n", rps / NR, p50[m] / 1000, p99[m] / 1000, bad, cpu[m], db[m]
	}'
}

# compare SCENARIO CONFIG NAME_A URL_A NAME_B URL_B: alternating rounds; prints
# "rpsA rpsB", writes "cpuA cpuB" (median CPU µs/request of PID_A and PID_B,
# default CADDY_PID) to $run/cpu.txt and records both summaries.
compare() {
	local sc=$1 cfg=$2 na=$3 ua=$4 nb=$5 ub=$6 r res pa=${PID_A:-${CADDY_PID:-}} pb=${PID_B:-${CADDY_PID:-}}
	: >"$run/a.txt"
	: >"$run/b.txt"
	load "$ua" 1 >/dev/null
	load "$ub" 1 >/dev/null
	for ((r = 1; r <= ROUNDS; r++)); do
		if ((r % 2)); then
			res=$(LOAD_PID=$pa load "$ua") && [[ -n $res ]] && echo "$res" >>"$run/a.txt"
			res=$(LOAD_PID=$pb load "$ub") && [[ -n $res ]] && echo "$res" >>"$run/b.txt"
		else
			res=$(LOAD_PID=$pb load "$ub") && [[ -n $res ]] && echo "$res" >>"$run/b.txt"
			res=$(LOAD_PID=$pa load "$ua") && [[ -n $res ]] && echo "$res" >>"$run/a.txt"
		fi
	done
	local sa sb
	sa=$(summarize "$run/a.txt")
	sb=$(summarize "$run/b.txt")
	record "$sc" "$cfg" "$na" "$sa"
	record "$sc" "$cfg" "$nb" "$sb"
	echo "$(cut -d' ' -f5 <<<"$sa") $(cut -d' ' -f5 <<<"$sb") $(cut -d' ' -f6 <<<"$sb")" >"$run/cpu.txt"
	echo "${sa%% *} ${sb%% *}"
}

div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN { if (v == "n/a") print "n/a"; else if ((op == ">=" && v >= g) || (op == "<=" && v <= g)) print "meets goal"; else print "MISSES goal" }'; }

# ---- scenario 1: guard overhead ------------------------------------------------

scenario_guard() {
	start_upstream || { say "upstream did not start"; return 1; }
	local store vc tok rates cfgname
	for store in $STORES; do
		need_store "$store" || { ratio "guard $store: skipped (backend unavailable)"; continue; }
		for vc in 0 1; do
			[[ $store == cache && $vc == 1 ]] && continue # nothing remote to cache
			cfgname=$store$([[ $vc == 1 ]] && echo "+vcache")
			say "guard: $cfgname"
			start_caddy "guard-$cfgname" "$(caddyfile "$store" "$vc")" ||
				{ ratio "guard $cfgname: Caddy did not start (see $run/guard-$cfgname.log)"; continue; }
			tok=$(our_token)
			if [[ -z $tok || $tok == null ]] || [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://$GUARDED/") != 200 ]]; then
				ratio "guard $cfgname: no working token (see $run/guard-$cfgname.log)"
				stop "$CADDY_PID"
				continue
			fi
			rates=$(BENCH_METHOD=GET BENCH_BODY= BENCH_AUTH="Bearer $tok" LOAD_DB=$store \
				compare guard "$cfgname" plain "http://$PLAIN/" guarded "http://$GUARDED/")
			local q goal=0.9 cpu cpuq
			[[ $store == cache ]] && goal=0.95
			q=$(div "${rates#* }" "${rates%% *}")
			local cpu_p cpu_g cpu_db
			read -r cpu_p cpu_g cpu_db <"$run/cpu.txt"
			cpuq="Caddy CPU/request plain $cpu_p µs, guarded $cpu_g µs ($(div "$cpu_g" "$cpu_p")x)"
			[[ $store == cache || $store == sqlite ]] || cpuq+=", $store server CPU/guarded request $cpu_db µs"
			[[ ${BENCH_PROFILE:-0} == 1 ]] && profile_guard "$cfgname" "$tok"
			if [[ $vc == 0 && $store != cache ]]; then
				goal=0.75
				[[ $store == cassandra ]] && goal=0.5
				ratio "guard $cfgname: guarded/plain = $q (goal without validation cache >= $goal: $(verdict "$q" "$goal" '>=')); $cpuq"
				row "remote-$store" "$q× plain ($cpuq)" "$(verdict "$q" "$goal" '>=')"
			else
				ratio "guard $cfgname: guarded/plain = $q (goal >= $goal: $(verdict "$q" "$goal" '>=')); $cpuq"
			fi
			stop "$CADDY_PID"
		done
	done
}

# ---- scenario: the guard with our own JWT access tokens ---------------------------

# scenario_jwt: plain against guarded with JWT access tokens
# (access_token_format jwt, generated keys in the store), on each store: the
# guard checks the signature once per token, then only the jti against the
# validation cache the JWT format turns on, so no request reads the store.
scenario_jwt() {
	start_upstream || { say "upstream did not start"; return 1; }
	local store tok rates q
	for store in $STORES; do
		need_store "$store" || { ratio "guard jwt $store: skipped (backend unavailable)"; continue; }
		say "guard: jwt $store"
		start_caddy "jwt-$store" "$(caddyfile "$store" 0 1h bench_ "$ADMIN" jwt)" ||
			{ ratio "guard jwt $store: Caddy did not start (see $run/jwt-$store.log)"; continue; }
		tok=$(our_token)
		if [[ -z $tok || $tok == null || $tok != *.*.* ]] ||
			[[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://$GUARDED/") != 200 ]]; then
			ratio "guard jwt $store: no working JWT (see $run/jwt-$store.log)"
			stop "$CADDY_PID"
			continue
		fi
		rates=$(BENCH_METHOD=GET BENCH_BODY= BENCH_AUTH="Bearer $tok" \
			compare guard-jwt "$store" plain "http://$PLAIN/" guarded "http://$GUARDED/")
		q=$(div "${rates#* }" "${rates%% *}")
		ratio "guard jwt $store: guarded/plain = $q (goal >= 0.97: $(verdict "$q" 0.97 '>='))"
		stop "$CADDY_PID"
	done
}

# profile_guard NAME TOKEN: a CPU profile of Caddy (its admin endpoint's
# pprof) while wrk loads the guarded route, kept as $run/guard-NAME.pprof,
# and its top functions in $run/guard-NAME.top.
profile_guard() {
	local admin
	admin=$(awk '/^\tadmin /{print $2; exit}' "$run/guard-$1.Caddyfile")
	BENCH_METHOD=GET BENCH_BODY= BENCH_AUTH="Bearer $2" load "http://$GUARDED/" $((DUR + 2)) >/dev/null &
	local lp=$!
	sleep 1
	curl -s -o "$run/guard-$1.pprof" "http://$admin/debug/pprof/profile?seconds=$DUR"
	wait "$lp"
	go tool pprof -top -nodecount=40 "$CADDY" "$run/guard-$1.pprof" >"$run/guard-$1.top" 2>/dev/null
	say "  profile: $run/guard-$1.pprof (top: $run/guard-$1.top)"
}

# ---- Hydra -------------------------------------------------------------------

HYDRA_PID=
# start_hydra: Hydra on its own database of the bench PostgreSQL.
start_hydra() {
	[[ -n $HYDRA_PID ]] && kill -0 "$HYDRA_PID" 2>/dev/null && return 0
	need_sql || return 1
	build_hydra || return 1
	# Hydra gets a database of its own on the same server; the store user may
	# lack CREATEDB, so fall back to the local superuser when running as root.
	if ! sqlx -dsn "$(hydra_dsn)" "SELECT 1" >/dev/null 2>&1; then
		sqlx -dsn "$PG_DSN" "CREATE DATABASE hydra_bench" >/dev/null 2>&1 ||
			su postgres -c "psql -q -c 'CREATE DATABASE hydra_bench OWNER \"$(pg_user)\"'" >/dev/null 2>&1 || true
	fi
	HYDRA_DSN=$(hydra_dsn)
	sqlx -dsn "$HYDRA_DSN" "SELECT 1" >/dev/null || { say "cannot reach database hydra_bench"; return 1; }
	export DSN=$HYDRA_DSN
	export SERVE_PUBLIC_HOST=${HYDRA_PUBLIC%:*} SERVE_PUBLIC_PORT=${HYDRA_PUBLIC#*:}
	export SERVE_ADMIN_HOST=${HYDRA_ADMIN%:*} SERVE_ADMIN_PORT=${HYDRA_ADMIN#*:}
	export URLS_SELF_ISSUER=http://$HYDRA_PUBLIC/ SECRETS_SYSTEM=$TOKEN_SECRET
	export OAUTH2_HASHERS_ALGORITHM=bcrypt OAUTH2_HASHERS_BCRYPT_COST=$COST
	export LOG_LEVEL=warn STRATEGIES_ACCESS_TOKEN=opaque SQA_OPT_OUT=true
	"$HYDRA" migrate sql -e --yes >"$run/hydra-migrate.log" 2>&1 || { say "hydra migrate failed, see $run/hydra-migrate.log"; return 1; }
	start hydra "${SERVER_CPU[@]}" "$HYDRA" serve all --dev
	HYDRA_PID=$LAST_PID
	wait_port "$HYDRA_ADMIN" "$HYDRA_PID" 60 && wait_port "$HYDRA_PUBLIC" "$HYDRA_PID" 60 ||
		{ say "Hydra did not start, see $run/hydra.log"; return 1; }
	curl -s -X DELETE "http://$HYDRA_ADMIN/admin/clients/$CLIENT" >/dev/null
	curl -sf -X POST "http://$HYDRA_ADMIN/admin/clients" -H 'Content-Type: application/json' \
		-d "{\"client_id\":\"$CLIENT\",\"client_secret\":\"$CLIENT_SECRET\",\"grant_types\":[\"client_credentials\"],\"scope\":\"read\",\"token_endpoint_auth_method\":\"client_secret_basic\"}" \
		>"$run/hydra-client.json" || { say "creating the Hydra client failed"; return 1; }
	[[ $(jq -r .client_id "$run/hydra-client.json") == "$CLIENT" ]] || { say "Hydra ignored our client_id"; return 1; }
}

pg_user() { sed -E 's#^postgres(ql)?://([^:@/]*).*#\2#' <<<"$PG_DSN"; }

# hydra_dsn: PG_DSN pointing at database hydra_bench.
hydra_dsn() {
	local d=$PG_DSN
	if [[ $d == postgres*://* ]]; then
		d=$(sed -E 's#^(postgres(ql)?://[^/]*)/[^?]*#\1/hydra_bench#' <<<"$d")
		[[ $d == *sslmode=* ]] || d+=$([[ $d == *\?* ]] && echo '&' || echo '?')sslmode=disable
	else
		say "PG DSN is not a URL; Hydra needs postgres://..."
		return 1
	fi
	echo "$d"
}

hydra_token() {
	curl -sf -u "$CLIENT:$CLIENT_SECRET" -d grant_type=client_credentials -d scope=read "http://$HYDRA_PUBLIC/oauth2/token" |
		jq -r .access_token
}

# ---- scenario 2: issuance ------------------------------------------------------

scenario_issuance() {
	local store res pg_rps=
	for store in $STORES; do
		need_store "$store" || { ratio "issuance $store: skipped (backend unavailable)"; continue; }
		say "issuance: $store"
		start_caddy "issue-$store" "$(caddyfile "$store" 0)" || { ratio "issuance $store: Caddy did not start"; continue; }
		our_token >/dev/null # the first request pays bcrypt
		load "http://$AUTH/oauth2/token" 1 >/dev/null
		res=$(BENCH_METHOD=POST BENCH_BODY="grant_type=client_credentials&scope=read" BENCH_AUTH=$BASIC \
			load "http://$AUTH/oauth2/token" $((DUR * 2)))
		echo "$res" >"$run/a.txt"
		record issuance "$store" ours "$(summarize "$run/a.txt")"
		[[ $store == postgres ]] && pg_rps=${res%% *}
		stop "$CADDY_PID"
	done
	if start_hydra; then
		hydra_token >/dev/null
		res=$(BENCH_METHOD=POST BENCH_BODY="grant_type=client_credentials&scope=read" BENCH_AUTH=$BASIC LOAD_PID=$HYDRA_PID \
			load "http://$HYDRA_PUBLIC/oauth2/token" $((DUR * 2)))
		echo "$res" >"$run/a.txt"
		record issuance postgres hydra "$(summarize "$run/a.txt")"
		local q
		q=$(div "${pg_rps:-0}" "${res%% *}")
		ratio "issuance postgres: ours/hydra = ${q}x, bcrypt cost $COST both (goal >= 2: $(verdict "$q" 2 '>='))"
		# Hydra runs bcrypt on every request and we remember a verified secret,
		# so also show Hydra at the cheapest bcrypt cost: what is left is the
		# rest of its pipeline.
		if [[ $COST != 4 ]]; then
			stop "$HYDRA_PID"
			HYDRA_PID=
			if COST=4 start_hydra; then
				hydra_token >/dev/null
				res=$(BENCH_METHOD=POST BENCH_BODY="grant_type=client_credentials&scope=read" BENCH_AUTH=$BASIC LOAD_PID=$HYDRA_PID \
					load "http://$HYDRA_PUBLIC/oauth2/token" $((DUR * 2)))
				echo "$res" >"$run/a.txt"
				record issuance postgres "hydra, bcrypt cost 4" "$(summarize "$run/a.txt")"
				q=$(div "${pg_rps:-0}" "${res%% *}")
				ratio "issuance postgres: ours (cost $COST) / hydra (cost 4) = ${q}x"
			fi
			stop "$HYDRA_PID"
			HYDRA_PID=
		fi
	else
		ratio "issuance: Hydra unavailable, no ratio"
	fi
}

# ---- scenario 3: introspection -------------------------------------------------

scenario_introspection() {
	need_sql || { ratio "introspection: skipped (no PostgreSQL)"; return; }
	start_hydra || { ratio "introspection: Hydra unavailable"; return; }
	say "introspection: ours (postgres) vs Hydra"
	start_caddy introspect "$(caddyfile postgres 0)" || { ratio "introspection: Caddy did not start"; return; }
	local ours theirs rates q
	ours=$(our_token)
	theirs=$(hydra_token)
	[[ -n $ours && -n $theirs && $theirs != null ]] || { ratio "introspection: could not get tokens"; stop "$CADDY_PID"; return; }
	# Ours authenticates the caller as a confidential client (RFC 7662 §2.1);
	# Hydra's admin endpoint takes no credentials.
	: >"$run/a.txt"
	: >"$run/b.txt"
	local r res
	for ((r = 1; r <= ROUNDS; r++)); do
		res=$(BENCH_METHOD=POST BENCH_BODY="token=$ours" BENCH_AUTH=$BASIC load "http://$AUTH/oauth2/introspect")
		[[ -n $res ]] && echo "$res" >>"$run/a.txt"
		res=$(BENCH_METHOD=POST BENCH_BODY="token=$theirs" BENCH_AUTH= LOAD_PID=$HYDRA_PID load "http://$HYDRA_ADMIN/admin/oauth2/introspect")
		[[ -n $res ]] && echo "$res" >>"$run/b.txt"
	done
	local sa sb
	sa=$(summarize "$run/a.txt")
	sb=$(summarize "$run/b.txt")
	record introspection postgres ours "$sa"
	record introspection postgres hydra "$sb"
	q=$(div "${sa%% *}" "${sb%% *}")
	ratio "introspection postgres: ours/hydra = ${q}x (goal >= 2: $(verdict "$q" 2 '>='))"
	stop "$CADDY_PID"
}

# ---- scenario 4: purge ---------------------------------------------------------

# fill_expired DBMS PREFIX N: N expired access tokens, shaped like the store's rows.
fill_expired() {
	local dbms=$1 t=${2}access_tokens n=$3
	case $dbms in
	postgres)
		sqlx -dsn "$PG_DSN" \
			"INSERT INTO $t (token_key, client_id, subject, scope, family, issued_at, expires_at)
			 SELECT md5('x' || g) || md5('y' || g), '$CLIENT', NULL, 'read', md5('f' || g),
			        (extract(epoch FROM now()) * 1000)::bigint - 7200000 - g,
			        (extract(epoch FROM now()) * 1000)::bigint - 3600000 - g
			 FROM generate_series(1, $n) AS g" ;;
	mariadb)
		sqlx -driver mysql -dsn "$MYSQL_DSN" \
			"INSERT INTO $t (token_key, client_id, subject, scope, family, issued_at, expires_at)
			 SELECT sha2(concat('x', seq), 256), '$CLIENT', NULL, 'read', md5(concat('f', seq)),
			        unix_timestamp(now(3)) * 1000 - 7200000 - seq,
			        unix_timestamp(now(3)) * 1000 - 3600000 - seq
			 FROM seq_1_to_$n ORDER BY 1" ;;
	esac
}

count_rows() {
	case $1 in
	postgres) sqlx -dsn "$PG_DSN" "SELECT count(*) FROM $2" ;;
	mariadb) sqlx -driver mysql -dsn "$MYSQL_DSN" "SELECT count(*) FROM $2" ;;
	esac
}

# expired_left DBMS TABLE: 1 while an expired row remains, else 0 (an index
# probe, cheap enough to poll during the purge, unlike count(*)).
expired_left() {
	local q="SELECT count(*) FROM (SELECT 1 FROM $2 WHERE expires_at < $(($(date +%s) * 1000)) LIMIT 1) s"
	case $1 in
	postgres) sqlx -dsn "$PG_DSN" "$q" ;;
	mariadb) sqlx -driver mysql -dsn "$MYSQL_DSN" "$q" ;;
	esac
}

# Ports of the second guard Caddy (with the validation cache) in the purge scenario.
VC_ADMIN=127.0.0.1:23021 VC_AUTH=127.0.0.1:23180 VC_PLAIN=127.0.0.1:23181 VC_GUARDED=127.0.0.1:23182

# One fill and one purge per database; two guard Caddies on the same tables,
# one without and one with the validation cache, loaded in alternating slices
# before and during the purge; a third Caddy does the purging.
scenario_purge() {
	need_sql || { ratio "purge: skipped (no MariaDB/PostgreSQL)"; return; }
	start_upstream || return 1
	local dbms prefix=benchpurge_ tok t0 t1 secs q name plain_pid vc_pid purger_pid left max=${BENCH_PURGE_MAX:-300}
	for dbms in ${BENCH_PURGE_DBMS:-mariadb postgres}; do
		say "purge: $dbms, $PURGE_ROWS expired rows"
		start_caddy "purge-$dbms" "$(caddyfile "$dbms" 0 1h "$prefix")" || { ratio "purge $dbms: Caddy did not start"; continue; }
		plain_pid=$CADDY_PID
		start_caddy "purge-$dbms+vcache" "$(ADMIN=$VC_ADMIN AUTH=$VC_AUTH PLAIN=$VC_PLAIN GUARDED=$VC_GUARDED caddyfile "$dbms" 1 1h "$prefix")" ||
			{ ratio "purge $dbms+vcache: Caddy did not start"; stop "$plain_pid"; continue; }
		vc_pid=$CADDY_PID
		empty_table "$dbms" "${prefix}access_tokens"
		tok=$(our_token)
		t0=$(date +%s.%N)
		fill_expired "$dbms" "$prefix" "$PURGE_ROWS" || { ratio "purge $dbms: inserting rows failed"; stop "$plain_pid"; stop "$vc_pid"; continue; }
		t1=$(date +%s.%N)
		say "  inserted in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s"
		export BENCH_METHOD=GET BENCH_BODY= BENCH_AUTH="Bearer $tok"
		LOAD_PID=$plain_pid load "http://$GUARDED/" 1 >/dev/null
		LOAD_PID=$vc_pid load "http://$VC_GUARDED/" 1 >/dev/null
		: >"$run/idle.txt"
		: >"$run/idle-vc.txt"
		for ((r = 1; r <= ROUNDS; r++)); do
			LOAD_PID=$plain_pid load "http://$GUARDED/" 3 >>"$run/idle.txt"
			LOAD_PID=$vc_pid load "http://$VC_GUARDED/" 3 >>"$run/idle-vc.txt"
		done
		start_caddy "purger-$dbms" "$(purger_caddyfile "$dbms" "$prefix")" ||
			{ ratio "purge $dbms: purger Caddy did not start"; stop "$plain_pid"; stop "$vc_pid"; unset BENCH_METHOD BENCH_BODY BENCH_AUTH; continue; }
		purger_pid=$CADDY_PID
		# Its first run starts one purge_every (5s) after it does.
		t0=$(awk -v t="$(date +%s.%N)" 'BEGIN{printf "%.3f", t + 5}')
		rm -f "$run/purge-$dbms.end"
		(
			while :; do
				[[ $(expired_left "$dbms" "${prefix}access_tokens" 2>/dev/null) == 0 ]] && { date +%s.%N >"$run/purge-$dbms.end"; exit 0; }
				sleep 1
			done
		) &
		local poller=$! deadline=$(($(date +%s) + max + 5))
		: >"$run/during.txt"
		: >"$run/during-vc.txt"
		while kill -0 "$poller" 2>/dev/null && (($(date +%s) < deadline)); do
			LOAD_PID=$plain_pid load "http://$GUARDED/" 3 >>"$run/during.txt"
			LOAD_PID=$vc_pid load "http://$VC_GUARDED/" 3 >>"$run/during-vc.txt"
		done
		kill "$poller" 2>/dev/null
		wait "$poller" 2>/dev/null
		unset BENCH_METHOD BENCH_BODY BENCH_AUTH
		stop "$purger_pid"
		stop "$plain_pid"
		stop "$vc_pid"
		local verdict_t
		if [[ -s $run/purge-$dbms.end ]]; then
			secs=$(awk -v a="$t0" -v b="$(<"$run/purge-$dbms.end")" 'BEGIN{printf "%.1f", b-a}')
			verdict_t=$(verdict "$secs" 30 '<=')
			secs="all $PURGE_ROWS rows purged in ${secs}s ($(awk -v n="$PURGE_ROWS" -v s="$secs" 'BEGIN{printf "%.0f", n / s}') rows/s)"
		else
			left=$(count_rows "$dbms" "${prefix}access_tokens")
			secs="NOT finished in ${max}s: $((PURGE_ROWS + 1 - left)) of $PURGE_ROWS rows purged ($(((PURGE_ROWS + 1 - left) / max)) rows/s)"
			verdict_t="MISSES goal"
		fi
		local v idle during worst p99q=
		for v in "" -vc; do
			name=$dbms$([[ $v == -vc ]] && echo "+vcache")
			idle=$(summarize "$run/idle$v.txt")
			during=$(summarize "$run/during$v.txt")
			record purge "$name" "guard idle" "$idle"
			record purge "$name" "guard during purge" "$during"
			# The worst slice too: a short stall hides in a median.
			worst=$(awk '{ if ($3 > m) m = $3 } END { printf "%.2f", m / 1000 }' "$run/during$v.txt")
			q=$(div "$(cut -d' ' -f3 <<<"$during")" "$(cut -d' ' -f3 <<<"$idle")")
			[[ -z $v ]] && p99q=$q
			ratio "purge $name: guard p99 during/idle = $q, worst 3s-slice p99 ${worst} ms (goal <= 1.5: $(verdict "$q" 1.5 '<='))"
		done
		ratio "purge $dbms: $secs by the store's purger under guard load (adaptive batches from 1000, purge_every 5s) (goal <= 30s: $verdict_t); $(purge_batches "$run/purger-$dbms.log")"
		row "purge-load-$dbms" "$secs; guard p99 during/idle $p99q" "$verdict_t, p99 $(verdict "$p99q" 1.5 '<=')"
		[[ ${BENCH_PURGE_IDLE:-1} == 1 ]] && purge_idle "$dbms" "$prefix"
	done
	[[ ${BENCH_PURGE_HYDRA:-1} == 1 ]] && purge_hydra
}

# purge_batches LOG: how the purger paced itself, from its debug lines.
purge_batches() {
	jq -r 'select(.msg == "purge batch" and (.table | endswith("access_tokens"))) | "\(.batch) \(.took) \(.lookup) \(.rest)"' "$1" 2>/dev/null |
		awk '{ n++; rows += $1; if ($1 > big) big = $1; took += $2; rest += $4; lk[n] = $3 }
		END { if (!n) { print "no batch lines"; exit }
			asort(lk)
			printf "%d batches, largest %d rows, %.1fs deleting, %.1fs resting, median lookup during a batch %.2f ms", n, big, took, rest, lk[int((n + 1) / 2)] * 1000 }'
}

# empty_table DBMS TABLE: leftovers of an interrupted run would skew a result.
empty_table() {
	case $1 in
	postgres) sqlx -dsn "$PG_DSN" "TRUNCATE $2" ;;
	mariadb) sqlx -driver mysql -dsn "$MYSQL_DSN" "TRUNCATE TABLE $2" ;;
	esac
}

# purge_idle DBMS PREFIX: the same backlog without traffic, purged by one
# admin-triggered run (POST /oauth2/purge) of a Caddy that does nothing
# else; the result is kept in $run/purge-idle.txt for the Hydra line.
purge_idle() {
	local dbms=$1 prefix=$2 t0 t1 out secs
	say "purge: $dbms, $PURGE_ROWS expired rows, no traffic"
	empty_table "$dbms" "${prefix}access_tokens"
	fill_expired "$dbms" "$prefix" "$PURGE_ROWS" || { ratio "purge $dbms idle: inserting rows failed"; return; }
	start_caddy "purger-idle-$dbms" "$(purger_caddyfile "$dbms" "$prefix" 1h)" || { ratio "purge $dbms idle: Caddy did not start"; return; }
	t0=$(date +%s.%N)
	out=$(curl -s -X POST "http://$ADMIN2/oauth2/purge")
	t1=$(date +%s.%N)
	stop "$CADDY_PID"
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
	local n
	n=$(jq -r .tokens <<<"$out" 2>/dev/null)
	[[ $n =~ ^[0-9]+$ ]] || { ratio "purge $dbms idle: admin purge failed: $out"; return; }
	echo "$dbms $secs $n" >>"$run/purge-idle.txt"
	ratio "purge $dbms, no traffic: $n of $PURGE_ROWS rows in ${secs}s, $(awk -v n="$n" -v s="$secs" 'BEGIN{printf "%.0f", n / s}') rows/s (one admin purge run); $(purge_batches "$run/purger-idle-$dbms.log")"
}

# purge_hydra: the same number of expired access tokens in Hydra's table, then
# `hydra janitor --tokens` over them, beside our purge of the same backlog on
# the same PostgreSQL without traffic.
purge_hydra() {
	start_hydra || { ratio "purge hydra: Hydra unavailable"; return; }
	say "purge: hydra janitor, $PURGE_ROWS expired rows (PostgreSQL)"
	local nid
	nid=$(sqlx -dsn "$HYDRA_DSN" "SELECT nid FROM hydra_client WHERE id = '$CLIENT'") || { ratio "purge hydra: no client row"; return; }
	sqlx -dsn "$HYDRA_DSN" "DELETE FROM hydra_oauth2_access WHERE signature LIKE 'bench-%'" >/dev/null
	sqlx -dsn "$HYDRA_DSN" \
		"INSERT INTO hydra_oauth2_access (signature, request_id, requested_at, client_id, scope, granted_scope,
		   form_data, session_data, subject, active, requested_audience, granted_audience, challenge_id, nid, expires_at)
		 SELECT 'bench-' || g, 'bench-req-' || g, now() - interval '2 hours', '$CLIENT', 'read', 'read',
		   '', '{}', '', true, '', '', NULL, '$nid', now() - interval '1 hour'
		 FROM generate_series(1, $PURGE_ROWS) AS g" >"$run/hydra-fill.log" 2>&1 ||
		{ ratio "purge hydra: inserting rows failed (see $run/hydra-fill.log)"; return; }
	local t0 t1 secs left ours hydra_rps ours_rps
	t0=$(date +%s.%N)
	DSN=$HYDRA_DSN "$HYDRA" janitor --tokens --keep-if-younger 1s --access-lifespan 1s --refresh-lifespan 1s \
		--limit "$PURGE_ROWS" --batch-size 1000 -e >"$run/hydra-janitor.log" 2>&1
	t1=$(date +%s.%N)
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
	left=$(sqlx -dsn "$HYDRA_DSN" "SELECT count(*) FROM hydra_oauth2_access WHERE signature LIKE 'bench-%'")
	hydra_rps=$(awk -v n="$((PURGE_ROWS - left))" -v s="$secs" 'BEGIN{printf "%.0f", n / s}')
	ours=$(awk '$1 == "postgres" {print $2}' "$run/purge-idle.txt" 2>/dev/null)
	ours_rps=$(awk '$1 == "postgres" {printf "%.0f", $3 / $2}' "$run/purge-idle.txt" 2>/dev/null)
	ratio "purge hydra (postgres): hydra janitor removed $((PURGE_ROWS - left)) of $PURGE_ROWS rows in ${secs}s, $hydra_rps rows/s (batch 1000); ours without traffic ${ours:-?}s, ${ours_rps:-?} rows/s; ours/hydra rows/s = $(div "${ours_rps:-0}" "$hydra_rps")x"
	row purge-idle "PostgreSQL: ours ${ours:-?}s (${ours_rps:-?} rows/s), hydra janitor ${secs}s ($hydra_rps rows/s)" "$(verdict "$(div "${ours_rps:-0}" "$hydra_rps")" 1 '>=')"
}

# ---- scenario 5: memory --------------------------------------------------------

rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/{print $2}' "/proc/$1/status"; }

scenario_memory() {
	say "memory: cache store with $MEM_TOKENS live tokens"
	CACHE_MB=${BENCH_MEM_CACHE_MB:-1024} start_caddy memory "$(CACHE_MB=${BENCH_MEM_CACHE_MB:-1024} caddyfile cache 0 1h)" ||
		{ ratio "memory: Caddy did not start"; return; }
	our_token >/dev/null
	local before after hwm out
	before=$(rss_kib "$CADDY_PID")
	out=$("${LOAD_CPU[@]}" "$cache_dir/mint" -url "http://$AUTH/oauth2/token" -client "$CLIENT" -secret "$CLIENT_SECRET" \
		-n "$MEM_TOKENS" -c 16 -timeout 15m 2>&1)
	say "  $out"
	sleep 2
	after=$(rss_kib "$CADDY_PID")
	hwm=$(hwm_kib "$CADDY_PID")
	# Tokens still there? The guard must admit the first and the last.
	row memory "$(((after - before) * 1024 / MEM_TOKENS)) B/token at $MEM_TOKENS tokens ($((before / 1024)) -> $((after / 1024)) MiB RSS)" "$(verdict "$(((after - before) * 1024 / MEM_TOKENS))" 128 '<=')"
	ratio "memory cache: RSS $((before / 1024)) MiB empty, $((after / 1024)) MiB holding $MEM_TOKENS access tokens (peak $((hwm / 1024)) MiB), $(((after - before) * 1024 / MEM_TOKENS)) B/token; max_memory ${BENCH_MEM_CACHE_MB:-1024}; mint: $out"
	stop "$CADDY_PID"
}

# ---- scenario 6: brute force -----------------------------------------------------

# The guard's p99 on the Caddy that also serves the token endpoint, idle and
# while a second wrk floods the token endpoint with wrong client secrets,
# in alternating rounds. Four floods: "no-auth", the same requests to a
# path of the auth site that is no endpoint (what any request flood costs);
# "spread", a random client_id and
# X-Forwarded-For address per request, which trusted_proxies makes Caddy
# believe, so no lockout applies and only the verification limit answers;
# "known-id", the benchmark's client_id from random addresses (the
# client_id's lockout answers); then "one", one client_id from one address.
# Last, how long after the floods the right secret works again.
FLOOD_CONNS=${BENCH_FLOOD_CONNS:-20}
scenario_bruteforce() {
	start_upstream || { say "upstream did not start"; return 1; }
	local cfg
	cfg=$(caddyfile cache 0 | awk '{print} /^\tpersist_config off$/ {print "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"}')
	start_caddy bruteforce "$cfg" || { ratio "bruteforce: Caddy did not start"; return; }
	local tok variant r res q idle during flood t0 secs
	tok=$(our_token)
	[[ -n $tok && $tok != null ]] || { ratio "bruteforce: no token"; stop "$CADDY_PID"; return; }
	export BENCH_METHOD=GET BENCH_BODY= BENCH_AUTH="Bearer $tok"
	load "http://$GUARDED/" 1 >/dev/null
	for variant in no-auth spread known-id one; do
		say "bruteforce: $variant"
		: >"$run/bf-idle.txt"
		: >"$run/bf-during.txt"
		: >"$run/bf-flood.txt"
		for ((r = 1; r <= ROUNDS; r++)); do
			res=$(load "http://$GUARDED/") && [[ -n $res ]] && echo "$res" >>"$run/bf-idle.txt"
			start "flood-$variant-$r" env BENCH_SPREAD="$(case $variant in spread) echo ids ;; known-id) echo ips ;; esac)" BENCH_FLOOD_CLIENT="$CLIENT" \
				"${LOAD_CPU[@]}" wrk -t1 -c"$FLOOD_CONNS" -d"$((DUR + 2))s" --timeout 10s -s "$here/bruteforce.lua" \
				"http://$AUTH/$([[ $variant == no-auth ]] && echo not-an-endpoint || echo oauth2/token)"
			local flood_pid=$LAST_PID
			sleep 1
			res=$(load "http://$GUARDED/") && [[ -n $res ]] && echo "$res" >>"$run/bf-during.txt"
			wait "$flood_pid" 2>/dev/null
			stop "$flood_pid"
			awk '/^RESULT/{print $2, $3, $4, $5, $6, $7}' "$run/flood-$variant-$r.log" >>"$run/bf-flood.txt"
		done
		idle=$(summarize "$run/bf-idle.txt")
		during=$(summarize "$run/bf-during.txt")
		flood=$(summarize "$run/bf-flood.txt")
		record bruteforce "cache, $variant" "guard idle" "$idle"
		record bruteforce "cache, $variant" "guard during flood" "$during"
		record bruteforce "cache, $variant" "flood (wrong secrets)" "$flood"
		q=$(div "$(cut -d' ' -f3 <<<"$during")" "$(cut -d' ' -f3 <<<"$idle")")
		ratio "bruteforce $variant: guard p99 during/idle = $q (goal <= 1.5: $(verdict "$q" 1.5 '<=')), p50 $(cut -d' ' -f2 <<<"$idle") -> $(cut -d' ' -f2 <<<"$during") ms, req/s $(cut -d' ' -f1 <<<"$idle") -> $(cut -d' ' -f1 <<<"$during"); flood answered $(cut -d' ' -f1 <<<"$flood") req/s, p99 $(cut -d' ' -f3 <<<"$flood") ms, $(awk '{n += $4} END {print n + 0}' "$run/bf-flood.txt") of $(awk '{n += $6} END {print n + 0}' "$run/bf-flood.txt") non-2xx"
	done
	unset BENCH_METHOD BENCH_BODY BENCH_AUTH
	# The last floods locked the client and the address: poll the right
	# secret until it works again.
	t0=$(date +%s.%N)
	secs=
	while awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{exit !(b - a < 120)}'; do
		if [[ $(curl -s -o /dev/null -w '%{http_code}' -u "$CLIENT:$CLIENT_SECRET" -d grant_type=client_credentials "http://$AUTH/oauth2/token") == 200 ]]; then
			secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
			break
		fi
		sleep 0.5
	done
	ratio "bruteforce: the right secret worked again ${secs:-NOT within 120}s after the flood stopped"
	stop "$CADDY_PID"
}

# ---- scenario: a flood of made-up opaque tokens, two introspecting issuers --------
# The guarded route accepts our own JWTs and, through introspection, the opaque
# tokens of two other servers (bench/introspector, each answer 5 ms). A flood
# draws made-up tokens from a pool of BENCH_POOL; measured: the upstream calls
# each repeated token still costs (the negative cache should answer it), and
# the guard's p99 for a valid JWT during the flood against idle.
scenario_introspection_flood() {
	start_upstream || { say "upstream did not start"; return 1; }
	start introspector "${LOAD_CPU[@]}" "$cache_dir/introspector" -addr "$INTRO_A,$INTRO_B"
	wait_port "$INTRO_B" "$LAST_PID" 10 || { ratio "introspection-flood: the mock issuers did not start"; return; }
	local cfg issuers tok r res idle during flood q
	issuers=$(for a in "$INTRO_A" "$INTRO_B"; do
		printf '\t\tissuer http://%s {\n\t\t\taudience api://bench\n\t\t\tintrospection_endpoint http://%s/introspect\n\t\t\tintrospection_client guard guard-secret\n\t\t}\n' "$a" "$a"
	done)
	cfg=$(caddyfile cache 0 1h bench_ "$ADMIN" jwt | awk -v add="$issuers" '{print} /^\t\tscopes read$/ {print add}')
	start_caddy introspection-flood "$cfg" || { ratio "introspection-flood: Caddy did not start"; return; }
	tok=$(our_token)
	if [[ -z $tok || $tok == null ]] || [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://$GUARDED/") != 200 ]]; then
		ratio "introspection-flood: no working JWT (see $run/introspection-flood.log)"
		stop "$CADDY_PID"
		return
	fi
	export BENCH_METHOD=GET BENCH_BODY= BENCH_AUTH="Bearer $tok"
	load "http://$GUARDED/" 1 >/dev/null
	: >"$run/if-idle.txt"
	: >"$run/if-during.txt"
	: >"$run/if-flood.txt"
	for ((r = 1; r <= ROUNDS; r++)); do
		res=$(load "http://$GUARDED/") && [[ -n $res ]] && echo "$res" >>"$run/if-idle.txt"
		start "if-flood-$r" env BENCH_POOL="${BENCH_POOL:-1000}" "${LOAD_CPU[@]}" wrk -t1 -c"$FLOOD_CONNS" -d"$((DUR + 2))s" --timeout 10s \
			-s "$here/flood.lua" "http://$GUARDED/"
		local flood_pid=$LAST_PID
		sleep 1
		res=$(load "http://$GUARDED/") && [[ -n $res ]] && echo "$res" >>"$run/if-during.txt"
		wait "$flood_pid" 2>/dev/null
		stop "$flood_pid"
		awk '/^RESULT/{print $2, $3, $4, $5, $6, $7}' "$run/if-flood-$r.log" >>"$run/if-flood.txt"
	done
	unset BENCH_METHOD BENCH_BODY BENCH_AUTH
	idle=$(summarize "$run/if-idle.txt")
	during=$(summarize "$run/if-during.txt")
	flood=$(summarize "$run/if-flood.txt")
	record introspection-flood "cache, jwt" "guard idle (own JWT)" "$idle"
	record introspection-flood "cache, jwt" "guard during flood (own JWT)" "$during"
	record introspection-flood "cache, jwt" "flood (made-up opaque tokens)" "$flood"
	local requests calls distinct per_req per_rep
	requests=$(awk '{n += $6} END {print n + 0}' "$run/if-flood.txt")
	read -r calls distinct < <(for a in "$INTRO_A" "$INTRO_B"; do curl -s "http://$a/stats"; echo; done |
		jq -rs '[(map(.calls) | add), (map(.distinct) | max)] | @tsv')
	per_req=$(div "$calls" "$requests")
	# A repeated token is every request past the first of its value; the
	# first costs one call per issuer.
	per_rep=$(awk -v c="$calls" -v d="$distinct" -v n="$requests" 'BEGIN { if (n - d <= 0) print "n/a"; else printf "%.4f", (c - 2 * d) / (n - d) }')
	q=$(div "$(cut -d' ' -f3 <<<"$during")" "$(cut -d' ' -f3 <<<"$idle")")
	ratio "introspection-flood: $requests made-up tokens ($distinct distinct) cost $calls upstream calls to 2 issuers: $per_req per request, $per_rep per repeated token (goal <= 0.05: $(verdict "$per_rep" 0.05 '<='))"
	ratio "introspection-flood: guard p99 for a valid JWT during/idle = $q (goal <= 1.5: $(verdict "$q" 1.5 '<=')), p99 $(cut -d' ' -f3 <<<"$idle") -> $(cut -d' ' -f3 <<<"$during") ms, req/s $(cut -d' ' -f1 <<<"$idle") -> $(cut -d' ' -f1 <<<"$during"); flood answered $(cut -d' ' -f1 <<<"$flood") req/s"
	row introspection-flood-calls "$per_rep upstream calls per repeated token" "$(verdict "$per_rep" 0.05 '<=')"
	row introspection-flood-p99 "$q× idle p99" "$(verdict "$q" 1.5 '<=')"
	stop "$CADDY_PID"
}

# ---- scenario 7: fleet ----------------------------------------------------------
# Three gateways on one PostgreSQL store with a 60s validation cache: how long a
# revocation on one takes to stop the token on the others (revocation feed,
# read every 500ms), what the feed's reads cost the database, and the guard's
# throughput with the feed on and off (the guarded route answers itself, no
# upstream). Ports 19760-19768.

FLEET_PREFIX=benchfleet_
fleet_addr() { echo "127.0.0.1:$((19760 + 3 * $1 + $2))"; } # gateway, 0 auth / 1 guarded / 2 admin

# fleet_caddyfile I FEED: gateway I, revocation_feed FEED (500ms or off).
fleet_caddyfile() {
	cat <<EOF
{
	admin $(fleet_addr "$1" 2)
	auto_https off
	persist_config off
	log {
		level WARN
	}
	oauth2 {
		token_secret $TOKEN_SECRET
		$(store_block postgres "$FLEET_PREFIX")
		authorization_code_store cache
		purge_every 1h
		validation_cache 60s
		revocation_feed $2
		client $CLIENT {
			secret_hash $SECRET_HASH
			grant_types client_credentials
			scopes read
		}
	}
}

http://$(fleet_addr "$1" 0) {
	oauth2_server
}

http://$(fleet_addr "$1" 1) {
	oauth2_guard read
	respond "ok"
}
EOF
}

scenario_fleet() {
	need_sql || { ratio "fleet: skipped (no PostgreSQL)"; return; }
	local i pids=() out tok res rates
	for i in 0 1 2; do
		start_caddy "fleet-$i" "$(fleet_caddyfile "$i" 500ms)" ||
			{ ratio "fleet: gateway $i did not start (see $run/fleet-$i.log)"; break; }
		pids+=("$CADDY_PID")
	done
	if ((${#pids[@]} == 3)); then
		say "fleet: timing ${BENCH_FLEET_TOKENS:-100} revocations over 3 gateways, and the feed's cost"
		out=$("$cache_dir/propagation" -n "${BENCH_FLEET_TOKENS:-100}" \
			-auth "http://$(fleet_addr 0 0),http://$(fleet_addr 1 0),http://$(fleet_addr 2 0)" \
			-guard "http://$(fleet_addr 0 1)/,http://$(fleet_addr 1 1)/,http://$(fleet_addr 2 1)/" \
			-client "$CLIENT" -secret "$CLIENT_SECRET" \
			-pg-dsn "$PG_DSN" -table "${FLEET_PREFIX}revocations" 2>"$run/propagation.err")
		echo "$out" >"$run/propagation.txt"
		res=$(awk '/^PROPAGATION/{printf "%s revocations seen on 2 other gateways: p50 %s ms, p99 %s ms, max %s ms", $2, $3, $4, $5}' <<<"$out")
		ratio "fleet postgres: revocation propagation, cache 60s, feed 500ms: ${res:-failed (see $run/propagation.err)} (goal p99 <= 1000 ms: $(verdict "$(awk '/^PROPAGATION/{print $4}' <<<"$out")" 1000 '<='))"
		ratio "fleet postgres: feed cost with 3 idle gateways: $(awk '/^FEEDLOAD/{printf "%s index scans/s and %s sequential scans/s of the feed table; one read %s µs from a client on loopback; plan %s", $2, $3, $4, $5}' <<<"$out")"
		# Throughput: gateway 0 (feed on) against gateway 1 restarted with
		# the feed off, in alternating rounds, with one cached token.
		for i in "${pids[@]:1}"; do stop "$i"; done
		pids=("${pids[0]}")
		if start_caddy "fleet-1-off" "$(fleet_caddyfile 1 off)"; then
			pids+=("$CADDY_PID")
			tok=$(curl -sf -u "$CLIENT:$CLIENT_SECRET" -d grant_type=client_credentials -d scope=read "http://$(fleet_addr 0 0)/oauth2/token" | jq -r .access_token)
			rates=$(BENCH_METHOD=GET BENCH_BODY= BENCH_AUTH="Bearer $tok" PID_A=${pids[0]} PID_B=$CADDY_PID \
				compare fleet "postgres+vcache 60s" "feed 500ms" "http://$(fleet_addr 0 1)/" "feed off" "http://$(fleet_addr 1 1)/")
			ratio "fleet postgres: guard with the feed on / off = $(div "${rates%% *}" "${rates#* }") (${rates%% *} vs ${rates#* } req/s, cached token, alternating rounds)"
		fi
	fi
	for i in "${pids[@]}"; do stop "$i"; done
}

# ---- Go microbenchmarks ----------------------------------------------------------

scenario_micro() {
	say "Go microbenchmarks"
	(cd "$repo" && go test -run '^$' -bench . -benchmem -benchtime "${BENCH_GOTIME:-1s}" \
		./validator/ ./token/ ./stores/cache/ ./issuer/ $([[ -d $repo/stores/lookupcache ]] && echo ./stores/lookupcache/) ./bench/) \
		2>&1 | tee "$run/micro.txt" | grep -E '^(Benchmark|ok|FAIL|---)' >&2
	grep '^Benchmark' "$run/micro.txt" >"$run/micro-lines.txt"
	# The guard's cost inside Caddy's chain: guarded minus plain.
	local d
	d=$(awk '
		function field(unit,   i) { for (i = 2; i < NF; i++) if ($(i + 1) == unit) return $i; return "" }
		/^BenchmarkCaddyPlain/   { pn = field("ns/op"); pb = field("B/op"); pa = field("allocs/op") }
		/^BenchmarkCaddyGuarded/ { gn = field("ns/op"); gb = field("B/op"); ga = field("allocs/op") }
		END { if (pn != "" && gn != "") printf "%+.2f %+d %+d %.2f %.2f", (gn - pn) / 1000, ga - pa, gb - pb, pn / 1000, gn / 1000 }' "$run/micro-lines.txt")
	if [[ -n $d ]]; then
		read -r dus dallocs dbytes pus gus <<<"$d"
		row guard-chain "$dus µs, $dallocs allocs, $dbytes B per request ($pus -> $gus µs)" \
			"$(awk -v u="$dus" -v a="$dallocs" 'BEGIN { print (u + 0 <= 0.5 && a + 0 <= 4) ? "meets goal" : "MISSES goal" }')"
	fi
}

# scenario_dpop (issue 19): requests per second through the guard in Caddy's
# chain with a DPoP-bound token (a fresh proof each request) against a plain
# bearer token, and one proof verification alone, for ES256 and EdDSA, all
# on one CPU. Goal: the guard's extra cost per request is at most 1.2 times
# one verification.
scenario_dpop() {
	say "DPoP: guard with proofs against bearer, and one verification alone"
	(cd "$repo" && go test -run '^$' -bench 'BenchmarkCaddyGuarded$|BenchmarkCaddyGuardedDPoP' -benchmem -cpu 1 \
		-count "${BENCH_ROUNDS:-3}" -benchtime "${BENCH_GOTIME:-1s}" ./bench/ &&
		go test -run '^$' -bench 'BenchmarkVerify' -benchmem -cpu 1 -count "${BENCH_ROUNDS:-3}" \
			-benchtime "${BENCH_GOTIME:-1s}" ./dpop/) 2>&1 | tee "$run/dpop.txt" | grep -E '^(Benchmark|ok|FAIL|---)' >&2
	local alg line
	for alg in ES256 EdDSA; do
		# Medians of the rounds, in ns per request.
		line=$(awk -v alg="$alg" '
			function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }; return a[int((n + 1) / 2)] }
			function ns(   i) { for (i = 2; i < NF; i++) if ($(i + 1) == "ns/op") return $i + 0 }
			$1 == "BenchmarkCaddyGuarded"                 { b[++nb] = ns() }
			$1 == "BenchmarkCaddyGuardedDPoP/" alg        { d[++nd] = ns() }
			$1 == "BenchmarkVerify/" alg "/verify"        { v[++nv] = ns() }
			END { if (nb && nd && nv) { B = med(b, nb); D = med(d, nd); V = med(v, nv); printf "%.0f %.0f %.1f %.1f %.2f", 1e9 / B, 1e9 / D, (D - B) / 1000, V / 1000, (D - B) / V } }' "$run/dpop.txt")
		[[ -n $line ]] || { row "dpop-$alg" "no result" "MISSES goal"; continue; }
		read -r brps drps extra verify ratio <<<"$line"
		row "dpop-$alg" "bearer $brps req/s, DPoP $drps req/s (one CPU); extra $extra µs per request, one verification $verify µs: ${ratio}x" \
			"$(awk -v r="$ratio" 'BEGIN { print (r + 0 <= 1.2) ? "meets goal" : "MISSES goal" }')"
	done
}

# issue_table prints a line for each row of issue 12's table, from what this
# run measured.
issue_table() {
	local key what target sc v
	echo "| measure | this run | target | verdict |"
	echo "| --- | --- | --- | --- |"
	while IFS='|' read -r key what target sc; do
		v=$(awk -F'\t' -v k="$key" '$1 == k { print $2 "|" $3 }' "$TABLE" | tail -1)
		[[ -n $v ]] || v="not measured in this run (scenario $sc)|"
		echo "| $what | ${v%|*} | $target | ${v##*|} |"
	done <<-'ROWS'
	guard-chain|guard inside Caddy's chain (BenchmarkCaddyGuarded − BenchmarkCaddyPlain)|≤ +0.5 µs, ≤ +4 allocs|micro
	memory|cache store memory, live access tokens|≤ 128 B/token|memory
	purge-load-postgres|purge of expired rows (BENCH_PURGE_ROWS), PostgreSQL, under guard load|≤ 30 s for 1,000,000, p99 ≤ 1.5× idle|purge
	purge-load-mariadb|the same on MariaDB|≤ 30 s for 1,000,000, p99 ≤ 1.5× idle|purge
	purge-idle|purge of the same rows without traffic|faster than hydra janitor on the same database|purge
	remote-sqlite|guard on SQLite without the validation cache|≥ 0.75× plain|guard
	remote-mariadb|guard on MariaDB without the validation cache|≥ 0.75× plain|guard
	remote-postgres|guard on PostgreSQL without the validation cache|≥ 0.75× plain|guard
	remote-cassandra|guard on Cassandra without the validation cache|≥ 0.5× plain|guard
	introspection-flood-calls|made-up opaque tokens, two introspecting issuers: upstream calls per repeated token|≤ 0.05|introspection-flood
	introspection-flood-p99|guard p99 for a valid JWT during that flood|≤ 1.5× idle|introspection-flood
	ROWS
}

# ---- report ----------------------------------------------------------------------

report() {
	echo
	echo "| scenario | store | variant | req/s | p50 ms | p99 ms | errors | CPU µs/req | DB CPU µs/req |"
	echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
	awk -F'\t' '{ split($4, v, " "); printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, v[1], v[2], v[3], v[4], v[5], v[6] }' "$RESULTS"
	echo
	issue_table
	echo
	sed 's/^/- /' "$RATIOS"
	if [[ -s $run/micro-lines.txt ]]; then
		echo
		echo '```'
		cat "$run/micro-lines.txt"
		echo '```'
	fi
}

machine() {
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- CPU: $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), nproc $(nproc)"
	echo "- memory: $(free -h | awk '/^Mem/{print $2 " total, " $7 " available"}')"
	echo "- $(go version), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
	echo "- wrk -t$THREADS -c$CONNS, ${DUR}s per run, $ROUNDS alternating rounds; bcrypt cost $COST"
	if ((${#SERVER_CPU[@]})); then
		echo "- pinned: Caddy/Hydra on CPU 0 (GOMAXPROCS 1), wrk and the upstream on CPU 1; databases unpinned"
	fi
}

main() {
	local scenarios=("$@") s
	((${#scenarios[@]})) || scenarios=(guard issuance introspection purge memory bruteforce micro fleet jwt introspection-flood dpop)
	for s in "${scenarios[@]}"; do
		declare -F "scenario_${s//-/_}" >/dev/null || { say "unknown scenario $s"; exit 2; }
	done
	build
	for s in "${scenarios[@]}"; do
		say "=== $s"
		"scenario_${s//-/_}"
	done
	report | tee "$run/report.md"
	if [[ ${BENCH_WRITE_RESULTS:-0} == 1 ]]; then
		# Sections recorded by hand follow a marker line and are kept.
		local marker='<!-- Recorded by hand below this line: bench/run.sh keeps it when it writes this file. -->'
		local kept=
		[[ -f $here/RESULTS.md ]] && kept=$(awk -v m="$marker" 'f || $0 == m { f = 1; print }' "$here/RESULTS.md")
		{
			echo "# Benchmark results"
			echo
			echo "Written by \`bench/run.sh ${scenarios[*]}\` (BENCH_WRITE_RESULTS=1)."
			echo
			machine
			report
			echo
			if [[ -n $kept ]]; then echo "$kept"; else echo "$marker"; fi
		} >"$here/RESULTS.md.new" && mv "$here/RESULTS.md.new" "$here/RESULTS.md"
		say "wrote bench/RESULTS.md"
	fi
}

main "$@"
