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
tar -c --exclude=./.git . | tar -x -C "$copy"
cd "$copy"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $f ($t)"
		if ! go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >"$log" 2>&1; then
			cat "$log"
			keep=1
			for input in "$dir"/testdata/fuzz/"$f"/*; do
				[ -f "$input" ] || continue
				if ! git -C "$OLDPWD" ls-files --error-unmatch "${input#"$copy"/}" >/dev/null 2>&1; then
					echo "failing input: $input"
					cat "$input"
				fi
			done
			echo "replay: (cd $dir && go test -run '^$f\$' .)   # the copy is kept; the working tree is untouched"
			exit 1
		fi
	done
done
echo "fuzz ok"
