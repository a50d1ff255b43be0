#!/usr/bin/env bash
# Walks through the README on this machine, commands as they are written:
# the two first commands' relay + its swaks line, then every block marked
# <!-- walkthrough --> (and <!-- walkthrough: background --> for servers).
# Only for a dedicated machine (CI): it writes /etc/inkan and /var/lib/inkan.
# DNS is pointed at a closed loopback port (INKAN_DELIVERY_RESOLVER) so that
# delivery attempts never leave the machine; they are simply deferred.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CI:-}" != "true" ] && [ "${1:-}" != "--force" ]; then
  echo "readme.sh rewrites /etc/inkan and /var/lib/inkan; run it with --force (CI does)"; exit 2
fi
export INKAN_DELIVERY_RESOLVER=127.0.0.1:9
work=$(mktemp -d)
pids=()
# Servers run in their own process group (setsid) so that `go run`'s child
# is stopped with it.
stop_group() { kill -TERM -- "-$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
cleanup() { for p in "${pids[@]}"; do stop_group "$p"; done; rm -rf "$work"; }
trap cleanup EXIT
pass=0; fail=0
ok() { echo "PASS $*"; pass=$((pass+1)); }
ko() { echo "FAIL $*"; fail=$((fail+1)); }
wait_ready() { for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:8025/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
command -v curl >/dev/null || { apt-get install -y -qq curl >/dev/null; }

rm -rf /etc/inkan /var/lib/inkan

# 1. The README's first command, on the embedded default, and its swaks line.
first=$(grep -m1 '^go run ./cmd/inkan serve' README.md | sed 's/ *#.*//')
test_cmd=$(grep -m1 '^go test' README.md | sed 's/ *#.*//')
[ "$test_cmd" = "go test -race ./..." ] && ok "README's test command is what CI runs ($test_cmd)" || ko "README test command is '$test_cmd'"
go build -o "$work/inkan" ./cmd/inkan   # warm the cache so go run starts fast
setsid bash -c "$first" >"$work/first.log" 2>&1 & pids+=($!)
if wait_ready; then ok "first command: $first"; else ko "first command did not become ready"; cat "$work/first.log"; fi
grep -q "Try it:" "$work/first.log" && ok "banner prints a swaks line" || ko "banner has no swaks line"
swaks_line=$(grep -m1 '^swaks --server 127.0.0.1:2525' README.md)
if out=$(bash -c "$swaks_line" 2>&1) && grep -q "queued as" <<<"$out"; then ok "README swaks line: $swaks_line"; else ko "README swaks line"; echo "$out" | tail -5; fi
stop_group "${pids[0]}"; pids=()
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:8025/healthz >/dev/null 2>&1 || break; sleep 0.1; done

# 2. The five-minute path, with the binary installed as the README says.
install -m 0755 "$work/inkan" /usr/local/bin/inkan
awk '
  /<!-- walkthrough: background -->/ { mode="bg"; next }
  /<!-- walkthrough -->/ { mode="fg"; next }
  /^```sh$/ && mode != "" { n++; file=sprintf("'"$work"'/block%02d.%s.sh", n, mode); inblock=1; next }
  /^```$/ && inblock { inblock=0; mode=""; next }
  inblock { print > file }
' README.md
for b in "$work"/block*.sh; do
  name=$(basename "$b")
  if [[ $name == *.bg.sh ]]; then
    setsid bash "$b" >"$work/serve.log" 2>&1 & pids+=($!)
    if wait_ready; then ok "background block $name: $(head -1 "$b")"; else ko "$name did not become ready"; tail -20 "$work/serve.log"; fi
  else
    if out=$(bash -e "$b" 2>&1); then ok "block $name ($(wc -l <"$b") lines)"; else ko "block $name"; echo "$out" | tail -20; fi
    echo "$out" > "$work/$name.out"
  fi
done
grep -q "queued as" "$work"/block*.fg.sh.out && ok "five-minute path queued the test message" || ko "no 'queued as' in the five-minute path"
grep -q "DKIM-Signature\|rsa1._domainkey" "$work"/block01.fg.sh.out && ok "keygen printed the records" || ko "keygen output"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
