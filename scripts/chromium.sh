#!/usr/bin/env bash
# Headless Chromium for the consent page's browser tests (Debian, as root).
#
#   scripts/chromium.sh        install Debian's chromium package if absent
#   scripts/chromium.sh env    print the export line for the tests:
#                              eval "$(scripts/chromium.sh env)"
#
# Idempotent: a second run finds it installed and returns at once.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

exe() { command -v chromium || command -v chromium-browser || true; }

case "${1:-install}" in
install)
	if [ -z "$(exe)" ]; then
		if [ "$(id -u)" -ne 0 ]; then
			echo "chromium.sh: must run as root to install chromium" >&2
			exit 1
		fi
		echo "chromium.sh: installing chromium" >&2
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
	fi
	"$(exe)" --version >&2
	;;
env)
	[ -n "$(exe)" ] || { echo "chromium.sh: chromium is not installed; run scripts/chromium.sh" >&2; exit 1; }
	echo "export OAUTH2_TEST_CHROMIUM=$(exe)"
	;;
*)
	echo "usage: $0 [install|env]" >&2
	exit 2
	;;
esac
