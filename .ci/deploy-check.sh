#!/usr/bin/env bash
# Deployment checks that need no Docker engine. Runs from the repository root
# as root on a bare Debian machine (installs what it lacks with apt-get):
#
#   - builds with deploy/build.sh, as the Dockerfile does, from a copy of
#     the files .dockerignore lets into the build context, and checks the
#     binary is static and carries the version;
#   - runs it as uid/gid 65532 (the image's USER) with the image's kind of
#     settings on loopback ports: ready per `inkan health` (the HEALTHCHECK),
#     accepts a message, reloads on SIGHUP, stops cleanly on SIGTERM and finds
#     its queue again after a restart. Delivery goes to a closed loopback
#     port, so no traffic leaves the machine;
#   - systemd-analyze verify/security on the unit (with ExecStart pointed at
#     the built binary), systemd-sysusers on the sysusers file;
#   - the Dockerfile's USER/EXPOSE/HEALTHCHECK, and the Go tests in deploy/
#     (Kubernetes and Compose files, .dockerignore, Grafana dashboard).
#
# Prints PASS/FAIL (or SKIP) per check and exits 1 if any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."

failures=0
start=$(date +%s)
t() { echo "t+$(($(date +%s) - start))s"; }
pass() { printf 'PASS  %s (%s)\n' "$*" "$(t)"; }
fail() { printf 'FAIL  %s (%s)\n' "$*" "$(t)"; failures=$((failures + 1)); }
skip() { printf 'SKIP  %s\n' "$*"; }

# need CMD PACKAGE: install PACKAGE when CMD is missing.
apt_updated=""
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need file file
need setpriv util-linux
need kill procps

work=$(mktemp -d)
chmod 0755 "$work"
bin=$work/inkan
pid=""
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

# --- build ------------------------------------------------------------------
version=ci-deploy-check
# Build as the Dockerfile does: `sh deploy/build.sh` inside a copy of the
# files .dockerignore lets into the build context.
if go run ./deploy/internal/dockerctx -o "$work/context" >"$work/build.log" 2>&1 &&
	(cd "$work/context" && VERSION=$version sh deploy/build.sh "$bin") >>"$work/build.log" 2>&1; then
	pass "sh deploy/build.sh builds the binary from the Docker build context ($(grep -o '[0-9]* files' "$work/build.log"))"
else
	cat "$work/build.log"
	fail "sh deploy/build.sh builds the binary from the Docker build context"
	echo "deploy checks: cannot go on without a binary"
	exit 1
fi
if [ "$("$bin" version | head -1)" = "inkan $version" ]; then
	pass "version injected with -ldflags (inkan version)"
else
	fail "version injected: got '$("$bin" version)', want 'inkan $version'"
fi
ldd_out=$(ldd "$bin" 2>&1 || true)
file_out=$(file -b "$bin")
buildinfo=$(go version -m "$bin")
if [[ $ldd_out == *"not a dynamic executable"* && $file_out == *"statically linked"* ]] &&
	grep -q -- '-trimpath=true' <<<"$buildinfo"; then
	pass "static binary (ldd, file, go version -m: -trimpath)"
else
	printf 'ldd: %s\nfile: %s\n%s\n' "$ldd_out" "$file_out" "$buildinfo"
	fail "static binary"
fi
# The release build links BoringCrypto on linux/amd64 and arm64 (issue 17);
# CRYPTO=go is the pure-Go fallback. Both must build, be static and say
# which they are.
case $(go env GOARCH) in
amd64 | arm64)
	if grep -q 'GOEXPERIMENT=boringcrypto' <<<"$buildinfo" && "$bin" version | grep -q '^crypto: BoringCrypto'; then
		pass "release build links BoringCrypto and says so (inkan version)"
		if "$bin" version | grep -q '^DKIM RSA signing: OpenSSL'; then
			pass "release build signs DKIM RSA with OpenSSL's libcrypto (libssl-dev present) and says so"
		else
			"$bin" version
			fail "release build with libssl-dev installed does not sign RSA with OpenSSL"
		fi
	else
		printf '%s\n' "$buildinfo"
		fail "release build links BoringCrypto"
	fi
	;;
esac
if (cd "$work/context" && CRYPTO=go VERSION=$version sh deploy/build.sh "$work/inkan-go") >>"$work/build.log" 2>&1 &&
	grep -q 'CGO_ENABLED=0' <<<"$(go version -m "$work/inkan-go")" && "$work/inkan-go" version | grep -q '^crypto: Go standard library' &&
	[[ $(ldd "$work/inkan-go" 2>&1) == *"not a dynamic executable"* ]]; then
	pass "CRYPTO=go builds the pure-Go static binary and says so"
else
	fail "CRYPTO=go build"
fi

# --- run as the image's user ------------------------------------------------
# pick_ports: five distinct loopback ports nothing listens on now (in this
# shell: $RANDOM repeats itself in $(...) subshells).
pick_ports() {
	local p ports=()
	while [ ${#ports[@]} -lt 5 ]; do
		p=$((20000 + RANDOM % 40000))
		[[ " ${ports[*]} " == *" $p "* ]] && continue
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
		ports+=("$p")
	done
	p_smtps=${ports[0]} p_sub=${ports[1]} p_relay=${ports[2]} p_http=${ports[3]} p_closed=${ports[4]}
}
pick_ports
run=$work/run
mkdir "$run"
uid=65532
if [ "$(id -u)" = 0 ]; then
	chown "$uid:$uid" "$run"
	as_user=(setpriv --reuid="$uid" --regid="$uid" --clear-groups)
else
	uid=$(id -u)
	as_user=()
	skip "running as uid 65532 needs root; running as uid $uid instead"
fi
# The image's settings (INKAN_DATA_DIR, every listener on), on loopback. The
# smarthost and resolver are closed loopback ports: nothing leaves the host.
set_env() {
	inkan_env=(
		PATH=/usr/bin:/bin HOME=/nonexistent
		INKAN_CONFIG= # as in the image: no config file, whatever this machine has in /etc/inkan
		INKAN_HOSTNAME=inkan-ci.example.com
		INKAN_DATA_DIR="$run/data"
		INKAN_LISTEN_SMTPS="127.0.0.1:$p_smtps"
		INKAN_LISTEN_SUBMISSION="127.0.0.1:$p_sub"
		INKAN_LISTEN_RELAY="127.0.0.1:$p_relay"
		INKAN_LISTEN_HTTP="127.0.0.1:$p_http"
		INKAN_HTTP_METRICS=true
		INKAN_DELIVERY_SMARTHOST_ADDRESS="[127.0.0.1]:$p_closed"
		INKAN_DELIVERY_RESOLVER="127.0.0.1:$p_closed"
		INKAN_QUEUE_RETRY_MIN=1h
	)
}
set_env
as_inkan() { "${as_user[@]}" env -i "${inkan_env[@]}" "$bin" "$@"; }

# start_serve LOG: starts `inkan serve`, sets pid, waits for `inkan health`.
start_serve() {
	"${as_user[@]}" env -i "${inkan_env[@]}" "$bin" serve >"$1" 2>&1 &
	pid=$!
	for _ in $(seq 60); do
		if ! kill -0 "$pid" 2>/dev/null; then
			cat "$1"
			return 1
		fi
		if as_inkan health >/dev/null 2>&1; then return 0; fi
		sleep 0.5
	done
	cat "$1"
	return 1
}

# stop_serve LOG: SIGTERM, then the exit status must be 0 within 40 s.
stop_serve() {
	kill -TERM "$pid"
	for _ in $(seq 80); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	local rc=0
	wait "$pid" || rc=$?
	pid=""
	[ "$rc" = 0 ] || { cat "$1"; echo "exit status $rc"; return 1; }
}

# http_get PATH: the body of GET PATH on the http listener.
http_get() {
	exec 3<>"/dev/tcp/127.0.0.1/$p_http"
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
	sed '1,/^\r\{0,1\}$/d' <&3
	exec 3<&-
}

# A port picked above may have been taken since: pick again, twice at most.
started=""
for _ in 1 2 3; do
	if start_serve "$work/serve1.log"; then started=1; break; fi
	grep -q 'address already in use' "$work/serve1.log" || break
	pick_ports
	set_env
done
if [ -n "$started" ]; then
	pass "inkan serve as uid $uid is ready (inkan health, as the image's HEALTHCHECK runs it)"
else
	fail "inkan serve as uid $uid is ready"
	echo "deploy checks: $failures failed"
	exit 1
fi

# 0711: private, but passable to reach listen.local's socket (sendmail.sock).
if [ "$(stat -c '%u %a' "$run/data")" = "$uid 711" ]; then
	pass "data dir created by inkan, owned by uid $uid, mode 0711 (listable by nobody else)"
else
	fail "data dir: $(stat -c '%u %a' "$run/data"), want '$uid 711'"
fi

if as_inkan health -url "http://127.0.0.1:$p_http/healthz" >/dev/null; then
	pass "/healthz answers 200"
else
	fail "/healthz answers 200"
fi

msg=$'From: ci@example.com\nTo: rcpt@example.net\nSubject: deploy check\n\nhello\n'
if as_inkan sendmail -f ci@example.com rcpt@example.net <<<"$msg" >"$work/sendmail.log" 2>&1 &&
	as_inkan queue list >"$work/queue.log" 2>&1 && grep -q 'rcpt@example.net' "$work/queue.log"; then
	pass "inkan sendmail queues a message (inkan queue list shows it)"
else
	cat "$work/sendmail.log" "$work/queue.log" 2>/dev/null || true
	fail "inkan sendmail queues a message"
fi

metrics=$(http_get /metrics || true)
if grep -q '^inkan_messages_accepted_total 1$' <<<"$metrics" && grep -q '^inkan_queue_messages 1$' <<<"$metrics"; then
	pass "/metrics: inkan_messages_accepted_total 1, inkan_queue_messages 1"
else
	grep '^inkan_' <<<"$metrics" | head -20 || true
	fail "/metrics counts the message"
fi

kill -HUP "$pid"
reloaded=""
for _ in $(seq 20); do
	if grep -q 'reloaded' "$work/serve1.log"; then reloaded=1; break; fi
	sleep 0.25
done
if [ -n "$reloaded" ] && kill -0 "$pid" 2>/dev/null; then
	pass "SIGHUP reloads (systemd ExecReload)"
else
	cat "$work/serve1.log"
	fail "SIGHUP reloads"
fi

if stop_serve "$work/serve1.log"; then
	pass "SIGTERM: clean exit, status 0"
else
	fail "SIGTERM: clean exit"
fi

if start_serve "$work/serve2.log" && as_inkan queue list 2>&1 | grep -q 'rcpt@example.net' && stop_serve "$work/serve2.log"; then
	pass "restart as uid $uid finds the queued message again"
else
	fail "restart finds the queued message again"
fi

# --- the systemd unit's file layout, read by its user -------------------------
# deploy/systemd/README.md's ownership model: what inkan reads belongs to
# root and may be read by the service's group (users file 0640, keys 0640 in
# a 0750 folder of that group, as keygen makes them there); the data
# directory is the service's own (StateDirectory=, 0700). inkan check and
# inkan serve, run as that user (uid/gid 65532 here, as User=inkan), accept it.
if [ "$(id -u)" = 0 ]; then
	etc=$work/etc-inkan
	install -d -m 0755 "$etc"
	install -d -m 0750 -o root -g "$uid" "$etc/dkim"
	env -i PATH=/usr/bin:/bin INKAN_CONFIG= "$bin" dkim keygen -d example.com -s s1 -o "$etc/dkim" >"$work/keygen.log" 2>&1 || cat "$work/keygen.log"
	key=$etc/dkim/example.com.s1.key
	printf 'pw\n' | env -i PATH=/usr/bin:/bin INKAN_CONFIG= INKAN_DATA_DIR="$work" INKAN_AUTH_USERS_FILE="$work/users.new" "$bin" user add alice@example.com >/dev/null
	install -m 0640 -o root -g "$uid" "$work/users.new" "$etc/users"
	install -d -m 0700 -o "$uid" -g "$uid" "$run/state"
	pick_ports
	cat >"$etc/inkan.yaml" <<-YAML
		hostname: inkan-ci.example.com
		data_dir: $run/state
		listen: {smtps: "127.0.0.1:$p_smtps", submission: "127.0.0.1:$p_sub", relay: "127.0.0.1:$p_relay", http: "127.0.0.1:$p_http"}
		auth:
		  users_file: $etc/users
		dkim:
		  keys:
		    - {domain: example.com, selector: s1, key_file: $key}
		delivery:
		  resolver: "127.0.0.1:$p_closed"
	YAML
	unit_env=(PATH=/usr/bin:/bin HOME=/nonexistent)
	if [ "$(stat -c '%u:%g %a' "$key")" = "0:$uid 640" ]; then
		pass "keygen into a 0750 root:inkan folder makes a 0640 root:inkan key"
	else
		fail "keygen key mode: $(stat -c '%u:%g %a' "$key"), want 0:$uid 640"
	fi
	if out=$("${as_user[@]}" env -i "${unit_env[@]}" "$bin" check -config "$etc/inkan.yaml" 2>&1) && grep -q ': ok$' <<<"$out"; then
		pass "inkan check as the service user accepts root-owned 0640 users file and key"
	else
		echo "$out"
		fail "inkan check as the service user"
	fi
	"${as_user[@]}" env -i "${unit_env[@]}" "$bin" serve -config "$etc/inkan.yaml" >"$work/serve3.log" 2>&1 &
	pid=$!
	ready=""
	for _ in $(seq 60); do
		kill -0 "$pid" 2>/dev/null || break
		if "${as_user[@]}" env -i "${unit_env[@]}" "$bin" health -config "$etc/inkan.yaml" >/dev/null 2>&1; then ready=1; break; fi
		sleep 0.5
	done
	if [ -n "$ready" ] && stop_serve "$work/serve3.log"; then
		pass "inkan serve as the service user starts on that layout and stops cleanly"
	else
		cat "$work/serve3.log"
		fail "inkan serve as the service user on the systemd layout"
		if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; pid=""; fi
	fi
	# A config mistake: exit 78 (RestartPreventExitStatus=78), one line, file:line.
	printf 'hostname: inkan-ci.example.com\nlisten:\n  smtps: ""\n   http: ""\n' >"$etc/bad.yaml"
	rc=0
	out=$("${as_user[@]}" env -i "${unit_env[@]}" "$bin" serve -config "$etc/bad.yaml" 2>&1) || rc=$?
	if [ "$rc" = 78 ] && [ "$(wc -l <<<"$out")" = 1 ] && grep -q "^error: $etc/bad.yaml:4: " <<<"$out"; then
		pass "a config mistake stops serve with 78 and one located line (systemd does not restart it)"
	else
		echo "exit $rc: $out"
		fail "config mistake: exit 78 with file:line"
	fi
else
	skip "the systemd file layout needs root"
fi

# --- HAProxy ----------------------------------------------------------------
if command -v haproxy >/dev/null 2>&1; then
	if out=$(haproxy -c -f deploy/haproxy/haproxy.cfg 2>&1); then
		pass "haproxy -c deploy/haproxy/haproxy.cfg"
	else
		echo "$out"
		fail "haproxy -c deploy/haproxy/haproxy.cfg"
	fi
else
	skip "haproxy not installed: deploy/haproxy/haproxy.cfg not checked"
fi

# --- systemd ----------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
	unitdir=$work/systemd
	mkdir -p "$unitdir/inkan.service.d"
	sed "s#/usr/local/bin/inkan#$bin#g" deploy/systemd/inkan.service >"$unitdir/inkan.service"
	cp deploy/systemd/opendkim-keys.conf "$unitdir/inkan.service.d/"
	# verify exits 0 on unknown keys and bad values: any output is a failure.
	out=$(SYSTEMD_UNIT_PATH="$unitdir:" systemd-analyze verify "$unitdir/inkan.service" 2>&1 || echo "exit status $?")
	if [ -z "$out" ]; then
		pass "systemd-analyze verify inkan.service (+ opendkim-keys.conf drop-in)"
	else
		echo "$out"
		fail "systemd-analyze verify inkan.service"
	fi
	if out=$(systemd-analyze security --offline=yes --threshold=20 "$unitdir/inkan.service" 2>&1); then
		pass "systemd-analyze security: $(grep -o 'exposure level.*' <<<"$out")"
	else
		echo "$out" | grep -E '✗|exposure'
		fail "systemd-analyze security: exposure above 2.0"
	fi
else
	skip "systemd-analyze not installed: unit not verified"
fi
if command -v systemd-sysusers >/dev/null 2>&1; then
	mkdir -p "$work/sysroot/etc"
	if systemd-sysusers --root="$work/sysroot" "$PWD/deploy/systemd/inkan.sysusers" >/dev/null 2>&1 &&
		grep -q '^inkan:x:[0-9]*:[0-9]*:.*:/var/lib/inkan:/usr/sbin/nologin$' "$work/sysroot/etc/passwd"; then
		pass "systemd-sysusers creates the inkan user"
	else
		fail "systemd-sysusers creates the inkan user"
	fi
else
	skip "systemd-sysusers not installed"
fi

# --- Dockerfile and manifests -----------------------------------------------
df_ok=1
grep -qx 'USER 65532:65532' Dockerfile || df_ok=""
grep -qx 'EXPOSE 2465 2587 2525 8025' Dockerfile || df_ok=""
grep -q '^HEALTHCHECK .*CMD \["/inkan", "health"\]$' Dockerfile || df_ok=""
grep -q 'sh deploy/build.sh /out/inkan' Dockerfile || df_ok=""
if [ -n "$df_ok" ]; then
	pass "Dockerfile: USER 65532:65532, EXPOSE 2465 2587 2525 8025, HEALTHCHECK inkan health, builds with deploy/build.sh"
else
	fail "Dockerfile: USER/EXPOSE/HEALTHCHECK/build.sh lines"
fi

if go test -count=1 ./deploy/ >"$work/gotest.log" 2>&1; then
	pass "go test ./deploy/ (Kubernetes, Compose, Dockerfile, .dockerignore, systemd, Grafana)"
else
	cat "$work/gotest.log"
	fail "go test ./deploy/"
fi

if [ "$failures" -gt 0 ]; then
	echo "deploy checks: $failures failed"
	exit 1
fi
echo "deploy checks: all passed"
