#!/usr/bin/env bash
# Installs panva's oauth4webapi (a third-party OAuth client library, from
# npm) into a cache folder for the dynamic registration tests
# (register_e2e_test.go), which run scripts/oauth4webapi/flow.mjs with it,
# and for the FAPI 2.0 tests (fapi2_e2e_test.go: scripts/oauth4webapi/fapi2.mjs,
# run from a folder linked to the installed node_modules).
# Needs Node.js 20 or later and npm.
#
#   scripts/oauth4webapi.sh install   # npm ci once into the cache (idempotent)
#   scripts/oauth4webapi.sh env       # prints export OAUTH2_TEST_OAUTH4WEBAPI=<cache>/flow.mjs
#
# Environment:
#   OAUTH4WEBAPI_CACHE  node_modules, kept between runs
#                       (default ${XDG_CACHE_HOME:-$HOME/.cache}/caddy-oauth2-oauth4webapi)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$here/oauth4webapi
if [[ -n ${OAUTH4WEBAPI_CACHE:-} ]]; then
	cache=$OAUTH4WEBAPI_CACHE
elif [[ -n ${XDG_CACHE_HOME:-} ]]; then
	cache=$XDG_CACHE_HOME/caddy-oauth2-oauth4webapi
elif [[ -n ${HOME:-} ]]; then
	cache=$HOME/.cache/caddy-oauth2-oauth4webapi
else
	cache=/var/cache/caddy-oauth2-oauth4webapi
fi

install() {
	command -v node >/dev/null || { echo "oauth4webapi.sh: node is not installed" >&2; exit 1; }
	mkdir -p "$cache"
	# npm ci again only when the pinned versions changed.
	if ! cmp -s "$src/package-lock.json" "$cache/package-lock.json" || [[ ! -d $cache/node_modules/oauth4webapi ]]; then
		echo "oauth4webapi.sh: installing oauth4webapi into $cache" >&2
		cp "$src/package.json" "$src/package-lock.json" "$cache/"
		(cd "$cache" && npm ci --no-audit --no-fund --loglevel=error >&2)
	fi
	cp "$src"/*.mjs "$cache/"
}

case "${1:-}" in
install)
	install
	;;
env)
	echo "export OAUTH2_TEST_OAUTH4WEBAPI=$cache/flow.mjs"
	;;
*)
	sed -n '2,14p' "$0" >&2
	exit 2
	;;
esac
