#!/usr/bin/env bash
# Runs panva's oidc-provider (a certified OpenID provider, from npm) on
# 127.0.0.1 as the third-party authorization server of the guard's
# external-issuer tests (external_e2e_test.go): JWT and opaque access
# tokens, JWKS, introspection, revocation; see scripts/oidc-provider/server.mjs.
# Needs Node.js 20 or later and npm.
#
#   scripts/oidc-provider.sh start   # npm ci once into the cache, start, wait (idempotent)
#   scripts/oidc-provider.sh stop    # stop the server this script started (by its pid)
#   scripts/oidc-provider.sh status
#   scripts/oidc-provider.sh env     # prints export OAUTH2_TEST_OIDC_PROVIDER=...
#
# Environment:
#   OIDC_PROVIDER_CACHE  node_modules, kept between runs
#                        (default ${XDG_CACHE_HOME:-$HOME/.cache}/caddy-oauth2-oidc-provider)
#   OIDC_PROVIDER_DIR    log and pid file (default ${TMPDIR:-/tmp}/caddy-oauth2-oidc-provider)
#   OIDC_PROVIDER_PORT   first port (default 20590); the next one serves a
#                        second, unrelated issuer
#   OIDC_PROVIDER_WAIT   seconds to wait for it to answer (default 120: on a
#                        busy 2-core machine, while Cassandra JVMs boot, its
#                        RSA key generation alone has taken over 30 s)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$here/oidc-provider
if [[ -n ${OIDC_PROVIDER_CACHE:-} ]]; then
	cache=$OIDC_PROVIDER_CACHE
elif [[ -n ${XDG_CACHE_HOME:-} ]]; then
	cache=$XDG_CACHE_HOME/caddy-oauth2-oidc-provider
elif [[ -n ${HOME:-} ]]; then
	cache=$HOME/.cache/caddy-oauth2-oidc-provider
else
	cache=/var/cache/caddy-oauth2-oidc-provider
fi
dir=${OIDC_PROVIDER_DIR:-${TMPDIR:-/tmp}/caddy-oauth2-oidc-provider}
port=${OIDC_PROVIDER_PORT:-20590}
wait_s=${OIDC_PROVIDER_WAIT:-120}
pidfile=$dir/pid
url=http://127.0.0.1:$port

running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
answers() { curl -fsS --noproxy '*' -o /dev/null --max-time 2 "$url/.well-known/openid-configuration" 2>/dev/null; }

install() {
	mkdir -p "$cache"
	# npm ci again only when the pinned versions changed.
	if ! cmp -s "$src/package-lock.json" "$cache/package-lock.json" || [[ ! -d $cache/node_modules/oidc-provider ]]; then
		echo "oidc-provider.sh: installing oidc-provider into $cache" >&2
		cp "$src/package.json" "$src/package-lock.json" "$cache/"
		(cd "$cache" && npm ci --no-audit --no-fund --loglevel=error >&2)
	fi
	cp "$src/server.mjs" "$cache/"
}

case "${1:-}" in
start)
	command -v node >/dev/null || { echo "oidc-provider.sh: node is not installed" >&2; exit 1; }
	if running && answers; then
		exit 0
	fi
	install
	mkdir -p "$dir"
	OIDC_PROVIDER_PORT=$port nohup node "$cache/server.mjs" >"$dir/log" 2>&1 &
	echo $! >"$pidfile"
	for ((i = 0; i < wait_s * 5; i++)); do
		if answers; then
			echo "oidc-provider.sh: up on $url (pid $(cat "$pidfile"))" >&2
			exit 0
		fi
		running || break
		sleep 0.2
	done
	if running; then
		echo "oidc-provider.sh: still not answering on $url after ${wait_s}s (pid $(cat "$pidfile") is alive); log $dir/log:" >&2
	else
		echo "oidc-provider.sh: exited before answering on $url; log $dir/log:" >&2
	fi
	tail -n 30 "$dir/log" >&2
	exit 1
	;;
stop)
	if running; then
		kill "$(cat "$pidfile")"
	fi
	rm -f "$pidfile"
	;;
status)
	if running && answers; then
		echo "oidc-provider: up on $url (pid $(cat "$pidfile"))"
	else
		echo "oidc-provider: down"
		exit 1
	fi
	;;
env)
	echo "export OAUTH2_TEST_OIDC_PROVIDER=$url"
	;;
*)
	echo "usage: $0 start|stop|status|env" >&2
	exit 2
	;;
esac
