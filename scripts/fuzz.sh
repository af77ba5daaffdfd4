#!/usr/bin/env bash
# Runs every Go fuzz target of the module, one after another, each for the
# given time, and prints per target the execs it ran and whether it crashed.
#
#   scripts/fuzz.sh [seconds] [package...]
#
#   seconds      fuzzing time per target (default 60)
#   package...   only these packages (default ./...), e.g. ./validator
#
#   FUZZ_PARALLEL   fuzzing workers per target (default 1: the runs are meant
#                   to share a machine; raise it on a dedicated one)
#   FUZZ_MINIMIZE   time spent minimizing each new input (default 10s; Go's
#                   60s default starves the slow targets of the root package)
#
# Targets are found with `go test -list '^Fuzz'`. A crasher is written by Go
# to <package>/testdata/fuzz/<Target>/ and stays there as a regression seed
# once the bug is fixed. Exits 1 if any target crashed or failed to run.
# The seed corpora alone run as ordinary tests under `go test ./...`.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)
parallel=${FUZZ_PARALLEL:-1}
minimize=${FUZZ_MINIMIZE:-10s}

if ! [[ $secs =~ ^[1-9][0-9]*$ ]]; then
	echo "usage: scripts/fuzz.sh [seconds] [package...]" >&2
	exit 2
fi

# "<package> <target>" per line. go test -list prints the names, then
# "ok <package> ..." once per package.
targets=$(go test -run '^$' -list '^Fuzz' "${pkgs[@]}" | awk '
	/^Fuzz/ { names[n++] = $1; next }
	/^ok[ \t]/ { for (i = 0; i < n; i++) print $2, names[i]; n = 0 }
')
if [ -z "$targets" ]; then
	echo "fuzz.sh: no fuzz targets in ${pkgs[*]}" >&2
	exit 1
fi

failed=0
summary=()
while read -r pkg name; do
	echo "==> $name ($pkg, ${secs}s, parallel $parallel)"
	log=$(mktemp)
	rc=0
	# -timeout 0: the default 10m would cut a long run short.
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "${secs}s" -parallel "$parallel" \
		-fuzzminimizetime "$minimize" -timeout 0 "$pkg" 2>&1 |
		tee "$log" || rc=$?
	execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	if [ "$rc" -eq 0 ]; then
		result="ok"
	else
		failed=1
		crasher=$(grep -o 'testdata/fuzz/[^ ]*' "$log" | head -n 1 || true)
		result="CRASH${crasher:+ ($crasher)}"
	fi
	summary+=("$(printf '%-28s %-52s execs %-12s %s' "$name" "$pkg" "${execs:-?}" "$result")")
	rm -f "$log"
done <<<"$targets"

echo
echo "==> summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
