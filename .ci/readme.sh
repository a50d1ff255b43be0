#!/usr/bin/env bash
# Walks through the README on this machine, commands as they are written:
# the two first commands' relay + its swaks line, then every block marked
# <!-- walkthrough --> (and <!-- walkthrough: background --> for servers).
#
# The walk-through makes a user, /etc/inkan, /var/lib/inkan and
# /usr/local/bin/inkan and listens on :465 and :587. As root with unshare(1),
# this script runs it in private namespaces: a network with only loopback,
# and overlays over /etc, /var/lib and /usr/local whose writes vanish with
# the namespace; the same by hand as in CI, and nothing is left behind.
# Without them it runs on the machine itself, refuses to if any of those
# paths exists already, and removes what it made when it ends.
# DNS is pointed at a closed loopback port (INKAN_DELIVERY_RESOLVER) so that
# delivery attempts never leave the machine; they are simply deferred.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get install -y -qq curl >/dev/null; }
command -v swaks >/dev/null || { apt-get install -y -qq swaks >/dev/null; }

if [ -z "${README_SANDBOX:-}" ] && [ "$(id -u)" = 0 ] && command -v ip >/dev/null &&
	unshare -m -n --propagation private true 2>/dev/null; then
	go build -o /dev/null ./cmd/inkan # fill the build cache: the sandbox has no network
	exec env README_SANDBOX=1 GOPROXY=off unshare -m -n --propagation private bash "$0" "$@"
fi

export INKAN_DELIVERY_RESOLVER=127.0.0.1:9
work=$(mktemp -d)
pids=()
made=() # what the walk-through made on the machine itself (no sandbox)
made_user=""
# Servers run in their own process group (setsid) so that `go run`'s child
# is stopped with it.
stop_group() { kill -TERM -- "-$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
cleanup() {
	for p in "${pids[@]}"; do stop_group "$p"; done
	if [ "${README_SANDBOX:-}" = 1 ]; then
		umount /usr/local /var/lib /etc "$work/ov" 2>/dev/null || true
	else
		rm -rf "${made[@]}"
		if [ -n "$made_user" ] && id -u inkan >/dev/null 2>&1; then
			userdel inkan 2>/dev/null || true
			getent group inkan >/dev/null && groupdel inkan 2>/dev/null || true
		fi
	fi
	rm -rf "$work"
}
trap cleanup EXIT
pass=0; fail=0
ok() { echo "PASS $*"; pass=$((pass+1)); }
ko() { echo "FAIL $*"; fail=$((fail+1)); }
wait_ready() { for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:8025/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

if [ "${README_SANDBOX:-}" = 1 ]; then
	ip link set lo up
	mkdir -p "$work/ov"
	mount -t tmpfs tmpfs "$work/ov" # overlays want an upper layer that is not itself an overlay
	for d in /etc /var/lib /usr/local; do
		mkdir -p "$work/ov$d/upper" "$work/ov$d/work"
		mount -t overlay overlay -o "lowerdir=$d,upperdir=$work/ov$d/upper,workdir=$work/ov$d/work" "$d"
	done
	rm -rf /etc/inkan /var/lib/inkan /usr/local/bin/inkan # in the overlays: the machine's stay
	echo "running in private namespaces: loopback only; /etc, /var/lib and /usr/local are overlays"
else
	for p in /etc/inkan /var/lib/inkan /usr/local/bin/inkan; do
		if [ -e "$p" ]; then
			echo "readme.sh: $p exists and is not this script's to replace; run as root where unshare(1) works (a private sandbox), or remove it"
			exit 2
		fi
	done
	made=(/etc/inkan /var/lib/inkan /usr/local/bin/inkan)
	id -u inkan >/dev/null 2>&1 || made_user=1
	echo "running on this machine; $(IFS=' '; echo "${made[*]}") are removed at the end"
fi

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
id=$(grep -o 'queued as [0-9A-Z]*' <<<"${out:-}" | head -1 | awk '{print $3}')
fate=""
for _ in $(seq 1 100); do
	fate=$(grep -m1 "msg=delivery queue_id=$id " "$work/first.log" || true)
	[ -n "$fate" ] && break
	sleep 0.1
done
if [[ $fate == *status=* ]]; then ok "the first message's fate is in the log, as the README says: ${fate#*msg=}"; else ko "no msg=delivery line for $id"; tail -5 "$work/first.log"; fi
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
grep -q "^config: /etc/inkan/inkan.yaml (system path).*: ok$" "$work"/block01.fg.sh.out && ok "inkan check found /etc/inkan/inkan.yaml by itself" || ko "inkan check without -config"
if out=$(inkan dkim explain alice@example.com 2>&1) && grep -q "sign d=example.com s=rsa1" <<<"$out"; then
	ok "inkan dkim explain alice@example.com, as typed in the README"
else
	ko "inkan dkim explain alice@example.com"; echo "$out"
fi
grep -q 'dkim="signed d=example.com' "$work/serve.log" && ok "the walk-through's message was signed" || ko "the walk-through's message was not signed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
