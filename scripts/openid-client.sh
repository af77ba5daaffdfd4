#!/usr/bin/env bash
# Installs panva's openid-client (a certified OpenID Connect relying party,
# from npm) into a cache folder for the OpenID Connect tests
# (oidc_rp_e2e_test.go), which run scripts/openid-client/rp.mjs with it.
# Needs Node.js 20 or later and npm.
#
#   scripts/openid-client.sh install   # npm ci once into the cache (idempotent)
#   scripts/openid-client.sh env       # prints export OAUTH2_TEST_OPENID_CLIENT=<cache>
#
# Environment:
#   OPENID_CLIENT_CACHE  node_modules and the scripts, kept between runs
#                        (default ${XDG_CACHE_HOME:-$HOME/.cache}/caddy-oauth2-openid-client)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$here/openid-client
if [[ -n ${OPENID_CLIENT_CACHE:-} ]]; then
	cache=$OPENID_CLIENT_CACHE
elif [[ -n ${XDG_CACHE_HOME:-} ]]; then
	cache=$XDG_CACHE_HOME/caddy-oauth2-openid-client
elif [[ -n ${HOME:-} ]]; then
	cache=$HOME/.cache/caddy-oauth2-openid-client
else
	cache=/var/cache/caddy-oauth2-openid-client
fi

install() {
	command -v node >/dev/null || { echo "openid-client.sh: node is not installed" >&2; exit 1; }
	mkdir -p "$cache"
	# npm ci again only when the pinned versions changed.
	if ! cmp -s "$src/package-lock.json" "$cache/package-lock.json" || [[ ! -d $cache/node_modules/openid-client ]]; then
		echo "openid-client.sh: installing openid-client into $cache" >&2
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
	echo "export OAUTH2_TEST_OPENID_CLIENT=$cache"
	;;
*)
	sed -n '2,12p' "$0" >&2
	exit 2
	;;
esac
