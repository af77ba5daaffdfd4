#!/usr/bin/env bash
# Installs the official Model Context Protocol TypeScript SDK
# (@modelcontextprotocol/sdk, from npm) into a cache folder for the MCP
# end-to-end test (mcp_e2e_test.go), which runs scripts/mcp-sdk/mcp.mjs with
# it: an MCP server made with the SDK behind oauth2_guard, and the SDK's own
# client and OAuth flow. Needs Node.js 20 or later and npm.
#
#   scripts/mcp-sdk.sh install   # npm ci once into the cache (idempotent)
#   scripts/mcp-sdk.sh env       # prints export OAUTH2_TEST_MCP_SDK=<cache>
#
# Environment:
#   MCP_SDK_CACHE  node_modules, kept between runs
#                  (default ${XDG_CACHE_HOME:-$HOME/.cache}/caddy-oauth2-mcp-sdk)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$here/mcp-sdk
if [[ -n ${MCP_SDK_CACHE:-} ]]; then
	cache=$MCP_SDK_CACHE
elif [[ -n ${XDG_CACHE_HOME:-} ]]; then
	cache=$XDG_CACHE_HOME/caddy-oauth2-mcp-sdk
elif [[ -n ${HOME:-} ]]; then
	cache=$HOME/.cache/caddy-oauth2-mcp-sdk
else
	cache=/var/cache/caddy-oauth2-mcp-sdk
fi

install() {
	command -v node >/dev/null || { echo "mcp-sdk.sh: node is not installed" >&2; exit 1; }
	mkdir -p "$cache"
	# npm ci again only when the pinned versions changed.
	if ! cmp -s "$src/package-lock.json" "$cache/package-lock.json" || [[ ! -d $cache/node_modules/@modelcontextprotocol/sdk ]]; then
		echo "mcp-sdk.sh: installing @modelcontextprotocol/sdk into $cache" >&2
		cp "$src/package.json" "$src/package-lock.json" "$cache/"
		(cd "$cache" && npm ci --no-audit --no-fund --loglevel=error >&2)
	fi
	cp "$src/mcp.mjs" "$cache/"
}

case "${1:-}" in
install)
	install
	;;
env)
	echo "export OAUTH2_TEST_MCP_SDK=$cache"
	;;
*)
	sed -n '2,14p' "$0" >&2
	exit 2
	;;
esac
