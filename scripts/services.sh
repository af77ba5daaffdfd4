#!/usr/bin/env bash
# Local MariaDB and PostgreSQL for the SQL store's tests (Debian, as root).
#
#   scripts/services.sh start   install if absent, start on 127.0.0.1, create
#                               the oauth2 user and oauth2_test database
#   scripts/services.sh stop    stop both servers
#   scripts/services.sh env     print the export lines for the tests:
#                               eval "$(scripts/services.sh env)"
#
# Idempotent: a second start finds everything in place and returns quickly;
# servers already running are left as they are. No systemd needed.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

DB_USER=oauth2
DB_PASS=oauth2
DB_NAME=oauth2_test
MYSQL_PORT=3306
PG_PORT=5432

log() { echo "services.sh: $*" >&2; }

as_root() {
	if [ "$(id -u)" -ne 0 ]; then
		log "must run as root (installs packages and starts servers)"
		exit 1
	fi
}

pg_version() {
	local v
	v=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
	[ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/postgres" ] && echo "$v"
}

have_mariadb() { command -v mariadbd >/dev/null 2>&1 || command -v mysqld >/dev/null 2>&1; }

install() {
	local pkgs=()
	have_mariadb || pkgs+=(mariadb-server mariadb-client)
	[ -n "$(pg_version || true)" ] || pkgs+=(postgresql)
	if [ ${#pkgs[@]} -gt 0 ]; then
		log "installing ${pkgs[*]}"
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
	fi
}

mariadb_alive() { mariadb-admin --protocol=socket -uroot ping >/dev/null 2>&1; }

start_mariadb() {
	# Our settings win over 50-server.cnf by sorting last.
	# The tests run several gateways, each with its own connection pool,
	# beside the store tests: allow more connections than the default 151.
	local cnf=/etc/mysql/mariadb.conf.d/99-oauth2-test.cnf
	local want
	want=$(printf '[mysqld]\nbind-address = 127.0.0.1\nport = %s\nmax_connections = 500\n' "$MYSQL_PORT")
	if [ "$(cat "$cnf" 2>/dev/null)" != "$want" ]; then
		printf '%s\n' "$want" >"$cnf"
		if mariadb_alive; then
			log "restarting MariaDB for its new settings"
			mariadb-admin --protocol=socket -uroot shutdown || true
			for _ in $(seq 1 30); do mariadb_alive || break; sleep 1; done
		fi
	fi
	if ! mariadb_alive; then
		log "starting MariaDB"
		service mariadb start >/dev/null 2>&1 || true
		if ! mariadb_alive; then
			# Fall back to mysqld_safe when the init script cannot run here.
			mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
			(setsid mysqld_safe >/dev/null 2>&1 &)
		fi
		for _ in $(seq 1 60); do
			mariadb_alive && break
			sleep 1
		done
		mariadb_alive || { log "MariaDB did not start"; exit 1; }
	fi
	mariadb --protocol=socket -uroot <<-SQL
		CREATE DATABASE IF NOT EXISTS $DB_NAME CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
		CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
		CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
		GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
		GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'localhost';
		FLUSH PRIVILEGES;
	SQL
}

pg_alive() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1; }

psql_admin() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@"; }

start_postgres() {
	local v
	v=$(pg_version)
	if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$v main"; then
		log "creating PostgreSQL $v cluster"
		pg_createcluster "$v" main -p "$PG_PORT" >/dev/null
	fi
	# Several gateways with their own pools run beside the store tests:
	# allow more connections than the default 100.
	local conf="/etc/postgresql/$v/main/conf.d/oauth2-test.conf"
	local want
	want=$(printf "listen_addresses = '127.0.0.1'\nport = %s\nmax_connections = 400\n" "$PG_PORT")
	if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
		mkdir -p "$(dirname "$conf")"
		printf '%s\n' "$want" >"$conf"
		if pg_alive; then
			log "restarting PostgreSQL $v for its new settings"
			pg_ctlcluster "$v" main restart || true
		fi
	fi
	if ! pg_alive; then
		log "starting PostgreSQL $v"
		pg_ctlcluster "$v" main start || true
		for _ in $(seq 1 60); do
			pg_alive && break
			sleep 1
		done
		pg_alive || { log "PostgreSQL did not start"; exit 1; }
	fi
	if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" != 1 ]; then
		psql_admin -c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS'"
	fi
	if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
		psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_USER ENCODING 'UTF8' TEMPLATE template0"
	fi
}

stop() {
	if have_mariadb && mariadb_alive; then
		log "stopping MariaDB"
		service mariadb stop >/dev/null 2>&1 || mariadb-admin --protocol=socket -uroot shutdown || true
	fi
	local v
	v=$(pg_version || true)
	if [ -n "$v" ] && pg_alive; then
		log "stopping PostgreSQL $v"
		pg_ctlcluster "$v" main stop || true
	fi
}

print_env() {
	echo "export OAUTH2_TEST_MYSQL_DSN='$DB_USER:$DB_PASS@tcp(127.0.0.1:$MYSQL_PORT)/$DB_NAME'"
	echo "export OAUTH2_TEST_POSTGRES_DSN='postgres://$DB_USER:$DB_PASS@127.0.0.1:$PG_PORT/$DB_NAME?sslmode=disable'"
}

case "${1:-}" in
start)
	as_root
	install
	start_mariadb
	start_postgres
	log "MariaDB on 127.0.0.1:$MYSQL_PORT and PostgreSQL on 127.0.0.1:$PG_PORT ready"
	;;
stop)
	as_root
	stop
	;;
env)
	print_env
	;;
*)
	echo "usage: $0 start|stop|env" >&2
	exit 2
	;;
esac
