#!/usr/bin/env bash
# Runs every Fuzz target in the module for a short, bounded time each
# (default 5s; `.ci/fuzz.sh 30s`).
#
# It fuzzes a copy of the working tree: `go test -fuzz` writes a failing
# input into the package's testdata/fuzz/, and in the tree that file would
# make every later `go test` fail until someone deletes it. A failure prints
# the input and keeps the copy, with the command that replays it; to keep
# the input as a regression seed, copy it into the tree yourself. The fuzz
# corpus cache stays in $GOCACHE/fuzz, as always.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-5s}
copy=$(mktemp -d)
log=$(mktemp)
keep=""
cleanup() {
	rm -f "$log"
	if [ -z "$keep" ]; then rm -rf "$copy"; fi
}
trap cleanup EXIT
repo=$PWD
# new_inputs DIR TARGET: the inputs go test wrote under DIR/testdata/fuzz/TARGET
# that the repository does not hold.
new_inputs() {
	local input
	for input in "$1"/testdata/fuzz/"$2"/*; do
		[ -f "$input" ] || continue
		git -C "$repo" ls-files --error-unmatch "${input#"$copy"/}" >/dev/null 2>&1 || echo "$input"
	done
}
tar -c --exclude=./.git . | tar -x -C "$copy"
cd "$copy"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $f ($t)"
		ok=""
		for try in 1 2; do
			if go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >"$log" 2>&1; then
				ok=1
				break
			fi
			# On a busy machine the fuzz engine itself can miss the end of
			# -fuzztime and report "context deadline exceeded" without a
			# failing input: that is no finding, so it gets one more try.
			if [ "$try" = 1 ] && grep -q "context deadline exceeded" "$log" && [ -z "$(new_inputs "$dir" "$f")" ]; then
				echo "  the fuzz engine timed out without a failing input; once more"
				continue
			fi
			break
		done
		if [ -z "$ok" ]; then
			cat "$log"
			keep=1
			for input in $(new_inputs "$dir" "$f"); do
				echo "failing input: $input"
				cat "$input"
			done
			echo "replay: (cd $dir && go test -run '^$f\$' .)   # the copy is kept; the working tree is untouched"
			exit 1
		fi
	done
done
echo "fuzz ok"
