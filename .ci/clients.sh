#!/usr/bin/env bash
# The clients inkan really meets (issue 12), as real programs against the
# built binary, all on loopback:
#
#   old TLS   openssl s_client and Python's ssl limited to TLS 1.0, TLS 1.1
#             and RSA key exchange: refused on a modern listener (and the
#             failure logged with what they offered), accepted with AUTH on
#             a legacy one, the message delivered and DKIM-signed;
#   Postfix   a private Postfix (postfix -c DIR, chroot off) at its default
#             concurrency relays 1,000 messages from smtp-source through
#             inkan: all arrive, none deferred, no 421;
#   DSN       Postfix's sendmail -N success,delay,failure -R hdrs -V ENVID
#             through inkan: to a DSN-capable smtp-sink the parameters
#             arrive; to one without DSN inkan's own notices are right
#             (relayed, failed with ENVID/ORCPT and headers only, NEVER);
#   PROXY     HAProxy in front with send-proxy-v2: trust and Received use
#             the client's address; a PROXY header from an address that is
#             not a listed proxy is refused.
#
# Prints one PASS/FAIL line per check and "N passed, N failed"; exits 1 on a
# failure. Needs root (Postfix) and the packages of .ci/install-deps.sh.
# Work files go under $CLIENTS_BASE (default /var/lib/inkan-clients); they
# are removed after a clean run and kept after a failed one (KEEP=1 keeps).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HERE=$ROOT/.ci/clients
PY=/usr/bin/python3
BASE=${CLIENTS_BASE:-/var/lib/inkan-clients}
LIMIT=${CLIENTS_TIMEOUT:-300}
N_BULK=${CLIENTS_BULK:-1000}

if [ -z "${CLIENTS_INNER:-}" ]; then
  CLIENTS_INNER=1 exec timeout -k 15 "$LIMIT" bash "$0" "$@"
fi

PASSED=0
FAILED=0
PIDS=()
PF_STARTED=0
START=$(date +%s)
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1${2:+ ($2)}"; FAILED=$((FAILED + 1)); }
note() { echo "     $*"; }
show() { [ -f "$1" ] && tail -n "${2:-20}" "$1" | sed 's/^/     | /'; return 0; }

mkdir -p "$BASE"
chmod 755 "$BASE"
exec 9>"$BASE/lock"
flock -w 60 9 || { echo "FAIL another run holds $BASE/lock"; exit 1; }
for d in "$BASE"/run.*/postfix; do
  [ -s "$d/queue/pid/master.pid" ] && postfix -c "$d/conf" stop >/dev/null 2>&1 || true
done
rm -rf "$BASE"/run.*
WORK=$(mktemp -d "$BASE/run.XXXXXX")
chmod 711 "$WORK"
LOG=$WORK/log
mkdir -p "$LOG"

stop_pid() {
  local p=$1 i
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
PF=$WORK/postfix
stop_postfix() {
  [ "$PF_STARTED" = 1 ] || return 0
  postfix -c "$PF/conf" stop >/dev/null 2>&1 || true
  local m
  m=$(head -n 1 "$PF/queue/pid/master.pid" 2>/dev/null | tr -d ' ' || true)
  [ -n "$m" ] && stop_pid "$m"
  PF_STARTED=0
}
finish() {
  echo
  echo "$PASSED passed, $FAILED failed ($(($(date +%s) - START))s)"
  [ "$FAILED" = 0 ] || exit 1
  exit 0
}
cleanup() {
  local rc=$?
  set +e
  stop_postfix
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "$rc" = 0 ] && [ "$FAILED" = 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$WORK"
    # No trace outside the work folders: the base folder goes with the last run.
    if ! compgen -G "$BASE/run.*" >/dev/null; then rm -f "$BASE/lock" && rmdir "$BASE" 2>/dev/null; fi
  else echo "work files kept in $WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
on_term() {
  trap '' TERM INT
  fail "run: finished within ${LIMIT}s" "out of time; later checks did not run"
  echo "$PASSED passed, $FAILED failed"
  exit 124
}
trap on_term TERM INT
fatal() { fail "$1" "$2"; finish; }

free_ports() { $PY .ci/free-ports.py "$1"; } # N -> N distinct free ports
wait_port() {
  local i
  for i in $(seq $((${2:-15} * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
read -r P_SMTPS P_SUB P_RELAY P_HTTP P_RELAY2 P_HAP P_PF S_DSN S_PLAIN S_REJ <<<"$(free_ports 10)"
echo "clients: work=$WORK smtps(legacy)=$P_SMTPS submission(modern)=$P_SUB relay=$P_RELAY haproxy=$P_HAP->$P_RELAY2 postfix=$P_PF"

# ---------- build, key, sinks ----------
INKAN=$WORK/inkan
go build -o "$INKAN" ./cmd/inkan >"$LOG/build.log" 2>&1 || { show "$LOG/build.log"; fatal "build" "go build ./cmd/inkan"; }
mkdir -p "$WORK/keys"
"$INKAN" dkim keygen -d example.com -s ed1 -a ed25519 -o "$WORK/keys" >"$LOG/keygen.log" 2>&1 || fatal "keygen" "see $LOG/keygen.log"
ED_P=$(openssl pkey -in "$WORK/keys/example.com.ed1.key" -pubout -outform DER | tail -c 32 | base64 -w0)
echo "ed1._domainkey.example.com v=DKIM1; k=ed25519; p=$ED_P" >"$WORK/dnsmap"

SINKD=$WORK/sink
mkdir -p "$SINKD"
chmod 1777 "$SINKD"
start_sink() { # NAME PORT ARGS...: Postfix's smtp-sink, dumping every message to $SINKD/NAME
  local name=$1 port=$2
  shift 2
  smtp-sink -u nobody "$@" -D "$SINKD/$name" "127.0.0.1:$port" 256 >"$LOG/sink-$name.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port" 10 || fatal "sink $name" "smtp-sink did not start"
}
start_sink dsn "$S_DSN"                # advertises DSN
start_sink plain "$S_PLAIN" -N         # no DSN
start_sink reject "$S_REJ" -N -f RCPT  # no DSN, 5xx to every RCPT
DUMP_DSN=$SINKD/dsn
DUMP_PLAIN=$SINKD/plain
count() { $PY "$HERE/sinkdump.py" count "$1" "$2"; }
wait_count() { # FILE PREFIX N SECONDS
  local i
  for i in $(seq $(($4 * 5))); do
    [ "$(count "$1" "$2")" -ge "$3" ] && return 0
    sleep 0.2
  done
  return 1
}

# ---------- inkan ----------
PW=$(openssl rand -hex 12)
CFG=$WORK/inkan.yaml
cat >"$CFG" <<EOF
hostname: inkan.example.com
data_dir: $WORK/data
listen:
  smtps: "127.0.0.1:$P_SMTPS"
  submission: "127.0.0.1:$P_SUB"
  relay: "127.0.0.1:$P_RELAY"
  http: "127.0.0.1:$P_HTTP"
  local: ""
listeners:
  smtps: {tls_profile: legacy}
auth:
  users_file: $WORK/users
  trusted_networks: [127.0.0.1/32]
  senders:
    alice: [alice@example.com, "@sender.example"]
  trusted_senders: ["*"]
dkim:
  keys:
    - {domain: example.com, selector: ed1, key_file: $WORK/keys/example.com.ed1.key}
delivery:
  tls: may
  transport:
    dsn.example: "[127.0.0.1]:$S_DSN"
    plain.example: "[127.0.0.1]:$S_PLAIN"
    sender.example: "[127.0.0.1]:$S_PLAIN"
    example.net: "[127.0.0.1]:$S_PLAIN"
    reject.example: "[127.0.0.1]:$S_REJ"
queue:
  retry_min: 1s
  retry_max: 2s
http:
  metrics: true
EOF
printf '%s\n' "$PW" | "$INKAN" user add alice -config "$CFG" >"$LOG/user.log" 2>&1 || fatal "user add" "see $LOG/user.log"
"$INKAN" serve -config "$CFG" >"$LOG/inkan.log" 2>&1 &
INKAN_PID=$!
PIDS+=("$INKAN_PID")
for p in "$P_SMTPS" "$P_SUB" "$P_RELAY"; do wait_port "$p" 20 || { show "$LOG/inkan.log"; fatal "serve" "port $p not open"; }; done
if grep -q 'listeners.smtps.tls_profile.*legacy' "$LOG/inkan.log"; then
  pass "start: the legacy profile is warned about, naming listeners.smtps"
else
  fail "start: the legacy profile is warned about, naming listeners.smtps" "see $LOG/inkan.log"
fi

# ---------- 1. old TLS clients ----------
AUTHB64=$(printf '\0alice\0%s' "$PW" | base64 -w0)
# s_client_send NAME OPENSSL-ARGS...: AUTH + one message through openssl s_client
s_client_send() {
  local name=$1
  shift
  # -crlf turns these LF into CRLF; -nocommands: lines starting with R or Q are SMTP, not s_client commands
  printf 'EHLO printer.example.com\nAUTH PLAIN %s\nMAIL FROM:<alice@example.com>\nRCPT TO:<scan@plain.example>\nDATA\nFrom: alice@example.com\nTo: scan@plain.example\nSubject: clients-%s\n\nScanned.\n.\nQUIT\n' "$AUTHB64" "$name" |
    timeout 20 openssl s_client -connect "127.0.0.1:$P_SMTPS" -crlf -ign_eof -nocommands "$@" >"$LOG/openssl-$name.log" 2>&1 || true
  grep -q 'queued as' "$LOG/openssl-$name.log"
}
SUBJECTS=()
# OpenSSL 3 needs security level 0 for TLS 1.0/1.1 and for RSA key exchange
for v in "tls1:-tls1 -cipher DEFAULT:@SECLEVEL=0" "tls1_1:-tls1_1 -cipher DEFAULT:@SECLEVEL=0" "rsakex:-tls1_2 -cipher AES128-SHA:@SECLEVEL=0"; do
  name=openssl-${v%%:*}
  # shellcheck disable=SC2086
  if s_client_send "$name" ${v#*:}; then
    proto=$(grep -Eo 'Protocol *: *TLSv[0-9.]+|New, TLSv[0-9.]+, Cipher is [A-Z0-9-]+' "$LOG/openssl-$name.log" | head -n 2 | tr '\n' ' ')
    pass "openssl s_client ${v#*:}: AUTH and a message accepted on the legacy listener ($proto)"
    SUBJECTS+=("clients-$name")
  else
    fail "openssl s_client ${v#*:} on the legacy listener" "log $LOG/openssl-$name.log"
    show "$LOG/openssl-$name.log" 12
  fi
done
# the rsakex case must really be RSA key exchange, not a fallback
if grep -Eq 'Cipher is AES128-SHA|Cipher *: *AES128-SHA' "$LOG/openssl-openssl-rsakex.log" 2>/dev/null; then
  pass "openssl s_client -cipher AES128-SHA: RSA key exchange negotiated"
else
  fail "openssl s_client -cipher AES128-SHA: RSA key exchange negotiated" "log $LOG/openssl-openssl-rsakex.log"
fi
for v in tls1 tls1_1 rsakex; do
  if timeout 30 $PY "$HERE/oldtls.py" 127.0.0.1 "$P_SMTPS" ssl "$v" alice "$PW" alice@example.com scan@plain.example "clients-python-$v" >"$LOG/python-$v.log" 2>&1; then
    pass "python ssl ($v) on the legacy listener: $(grep negotiated "$LOG/python-$v.log"), AUTH and message accepted"
    SUBJECTS+=("clients-python-$v")
  else
    fail "python ssl ($v) on the legacy listener" "log $LOG/python-$v.log"
    show "$LOG/python-$v.log"
  fi
done
# the same clients on the modern submission listener (STARTTLS): refused, and logged
for v in tls1 tls1_1 rsakex; do
  timeout 30 $PY "$HERE/oldtls.py" 127.0.0.1 "$P_SUB" starttls "$v" alice "$PW" alice@example.com scan@plain.example "clients-refused-$v" >"$LOG/python-modern-$v.log" 2>&1 && rc=0 || rc=$?
  if [ "$rc" = 3 ]; then pass "python ssl ($v) on the modern listener: handshake refused"; else
    fail "python ssl ($v) on the modern listener: handshake refused" "exit $rc, log $LOG/python-modern-$v.log"
  fi
done
timeout 20 openssl s_client -connect "127.0.0.1:$P_SUB" -starttls smtp -tls1 -cipher 'DEFAULT:@SECLEVEL=0' </dev/null >"$LOG/openssl-modern-tls1.log" 2>&1 && rc=0 || rc=$?
if grep -q 'Cipher is (NONE)' "$LOG/openssl-modern-tls1.log" && ! grep -Eq 'New, TLSv1' "$LOG/openssl-modern-tls1.log"; then
  pass "openssl s_client -starttls smtp -tls1 on the modern listener: refused"
else
  fail "openssl s_client -starttls smtp -tls1 on the modern listener: refused" "log $LOG/openssl-modern-tls1.log"
fi
sleep 0.5
if grep 'TLS handshake failed' "$LOG/inkan.log" | grep 'listener=submission' | grep -q 'offered_versions="TLS 1.0"' &&
  grep 'TLS handshake failed' "$LOG/inkan.log" | grep -q 'hint=.*tls_profile: legacy'; then
  pass "inkan logs the failed STARTTLS handshakes with the versions and suites offered and a hint"
  note "$(grep 'TLS handshake failed' "$LOG/inkan.log" | head -n 1 | cut -c1-300)"
else
  fail "inkan logs the failed STARTTLS handshakes" "log $LOG/inkan.log"
  grep 'TLS' "$LOG/inkan.log" | tail -n 5 | sed 's/^/     | /'
fi
if wait_count "$DUMP_PLAIN" clients- "${#SUBJECTS[@]}" 30; then
  bad=0
  for s in "${SUBJECTS[@]}"; do
    $PY "$HERE/sinkdump.py" get "$DUMP_PLAIN" "$s" "$WORK/$s.eml" || bad=1
    $PY .ci/interop/dkim_verify.py "$WORK/dnsmap" "$WORK/$s.eml" >>"$LOG/dkim.log" 2>&1 || bad=1
  done
  if [ "$bad" = 0 ]; then pass "all ${#SUBJECTS[@]} messages from old TLS clients delivered, DKIM signature verified by dkimpy"; else
    fail "messages from old TLS clients delivered and signed" "log $LOG/dkim.log"
    show "$LOG/dkim.log"
  fi
else
  fail "messages from old TLS clients delivered" "$(count "$DUMP_PLAIN" clients-) of ${#SUBJECTS[@]} at the sink"
fi

# ---------- 2. Postfix at its default concurrency ----------
postfix_setup() {
  mkdir -p "$PF/conf" "$PF/queue" "$PF/data" || return 1
  chmod 755 "$PF" "$PF/queue"
  chown postfix "$PF/data" || return 1
  cp /etc/postfix/master.cf.proto "$PF/conf/master.cf" 2>/dev/null || cp /usr/share/postfix/master.cf.dist "$PF/conf/master.cf" || return 1
  : >"$PF/conf/main.cf"
  postconf -c "$PF/conf" -e compatibility_level=3.6 \
    queue_directory="$PF/queue" data_directory="$PF/data" \
    myhostname=postfix-client.example.com mydestination= \
    inet_interfaces=loopback-only inet_protocols=ipv4 mynetworks=127.0.0.0/8 \
    alias_maps= alias_database= local_transport=error:nolocal \
    "relayhost=[127.0.0.1]:$P_RELAY" smtp_tls_security_level=may \
    maillog_file="$LOG/postfix.log" || return 1
  postconf -c "$PF/conf" -F '*/*/chroot = n' || return 1
  postconf -c "$PF/conf" -MX smtp/inet || return 1
  postconf -c "$PF/conf" -M "127.0.0.1:$P_PF/inet=127.0.0.1:$P_PF inet n - n - - smtpd" || return 1
  PF_STARTED=1
  postfix -c "$PF/conf" start || return 1
  wait_port "$P_PF" 20
}
if ! postfix_setup >"$LOG/postfix-setup.log" 2>&1; then
  show "$LOG/postfix-setup.log"
  fatal "postfix: private instance (postfix -c) relaying to inkan" "did not start"
fi
note "Postfix: default_destination_concurrency_limit=$(postconf -c "$PF/conf" -h default_destination_concurrency_limit), smtp_tls_security_level=may, relayhost [127.0.0.1]:$P_RELAY (trusted network)"
t0=$(date +%s)
timeout 120 smtp-source -s 20 -m "$N_BULK" -c -f bulk@example.com -t bulk@example.net -S "clients-bulk" -M source.example.com "127.0.0.1:$P_PF" >"$LOG/smtp-source.log" 2>&1 || true
if wait_count "$DUMP_PLAIN" clients-bulk "$N_BULK" 180; then
  pass "postfix: $N_BULK messages from smtp-source -s 20 relayed by Postfix through inkan, all at the sink ($(($(date +%s) - t0))s)"
else
  fail "postfix: $N_BULK messages relayed through inkan" "$(count "$DUMP_PLAIN" clients-bulk) at the sink after $(($(date +%s) - t0))s"
fi
sleep 1
sent=$(grep -c "relay=127.0.0.1\[127.0.0.1\]:$P_RELAY.*status=sent" "$LOG/postfix.log" || true)
deferred=$(grep -c 'status=deferred' "$LOG/postfix.log" || true)
r421=$(grep -Ec ' 421[ -]' "$LOG/postfix.log" || true)
refused=$(grep -c 'connection refused' "$LOG/inkan.log" || true)
conc=$(grep -c 'connect to 127.0.0.1' "$LOG/postfix.log" || true)
if [ "$sent" -ge "$N_BULK" ] && [ "$deferred" = 0 ] && [ "$r421" = 0 ] && [ "$refused" = 0 ]; then
  pass "postfix: $sent deliveries to inkan status=sent, none deferred, no 421, inkan refused no connection"
else
  fail "postfix: none deferred by 421" "sent=$sent deferred=$deferred 421s=$r421 inkan-refused=$refused"
  grep -E 'status=deferred|421' "$LOG/postfix.log" | head -n 5 | sed 's/^/     | /'
fi

# ---------- 3. DSN through Postfix's sendmail ----------
pf_send() { # ENVID RCPT NOTIFY FROM
  printf 'From: alice@example.com\nTo: %s\nSubject: clients-dsn-%s\n\nDSN test.\n' "$2" "$1" |
    timeout 20 /usr/sbin/sendmail -C "$PF/conf" -i -N "$3" -R hdrs -V "$1" -f "$4" "$2"
}
pf_send env-dsn rcpt@dsn.example success,delay,failure alice@example.com || fail "sendmail -N -R -V to the DSN sink" "sendmail failed"
if wait_count "$DUMP_DSN" clients-dsn-env-dsn 1 40; then
  margs=$($PY "$HERE/sinkdump.py" field "$DUMP_DSN" clients-dsn-env-dsn X-Mail-Args)
  rargs=$($PY "$HERE/sinkdump.py" field "$DUMP_DSN" clients-dsn-env-dsn X-Rcpt-Args)
  notify=$(grep -o 'NOTIFY=[A-Z,]*' <<<"$rargs" | cut -d= -f2 | tr ',' '\n' | sort | tr '\n' ',')
  if [[ $margs == *RET=HDRS* && $margs == *ENVID=env-dsn* && $notify == DELAY,FAILURE,SUCCESS, && ${rargs,,} == *orcpt=rfc822\;rcpt@dsn.example* ]]; then
    pass "dsn: Postfix -> inkan -> DSN-capable sink: MAIL $margs, RCPT $rargs"
  else
    fail "dsn: parameters arrive at the DSN-capable sink" "MAIL [$margs] RCPT [$rargs]"
  fi
else
  fail "dsn: message to the DSN-capable sink" "not delivered"
fi
# to a next hop without DSN: inkan reports "relayed" itself
pf_send env-relayed rcpt@plain.example success,failure s-relayed@sender.example || true
# refused by the next hop: inkan bounces with ENVID, ORCPT and the header only
pf_send env-failed rcpt@reject.example failure s-failed@sender.example || true
# NOTIFY=NEVER: no bounce at all
pf_send env-never rcpt@reject.example never s-never@sender.example || true
dsn_check() { # NAME ADDRESS PATTERN...
  local name=$1 addr=$2 f=$WORK/dsn-$1.txt i p missing
  shift 2
  for i in $(seq 150); do $PY "$HERE/sinkdump.py" rcpt "$DUMP_PLAIN" "$addr" "$f" && break; sleep 0.2; done
  missing=()
  for p in "$@"; do grep -Eq -- "$p" "$f" 2>/dev/null || missing+=("$p"); done
  if [ ${#missing[@]} = 0 ]; then pass "dsn: inkan's own notice ($name): $*"; else
    fail "dsn: inkan's own notice ($name)" "missing: ${missing[*]}; file $f"
    show "$f" 30
  fi
}
dsn_check relayed s-relayed@sender.example 'Action: relayed' 'Status: 2\.0\.0' 'Original-Envelope-Id: env-relayed' \
  'Original-Recipient: rfc822; ?rcpt@plain.example' 'Final-Recipient: rfc822; ?rcpt@plain.example' 'text/rfc822-headers' 'Subject: clients-dsn-env-relayed'
dsn_check failed s-failed@sender.example 'Action: failed' 'Status: 5\.' 'Original-Envelope-Id: env-failed' \
  'Original-Recipient: rfc822; ?rcpt@reject.example' 'text/rfc822-headers'
if grep -q 'DSN test' "$WORK/dsn-failed.txt" 2>/dev/null; then fail "dsn: RET=HDRS returns the header only" "the body is in the bounce"; else pass "dsn: RET=HDRS returns the header only"; fi
sleep 2
if $PY "$HERE/sinkdump.py" rcpt "$DUMP_PLAIN" s-never@sender.example "$WORK/dsn-never.txt"; then
  fail "dsn: NOTIFY=NEVER sends no bounce" "a notice reached s-never@sender.example"
elif grep -q 'no notice: the sender' "$LOG/inkan.log"; then
  pass "dsn: NOTIFY=NEVER sends no bounce (inkan logs why)"
else
  fail "dsn: NOTIFY=NEVER sends no bounce" "no log line; log $LOG/inkan.log"
fi
stop_postfix

# ---------- 4. HAProxy with send-proxy-v2 ----------
CFG2=$WORK/inkan-proxied.yaml
cat >"$CFG2" <<EOF
hostname: inkan.example.com
data_dir: $WORK/data2
listen: {smtps: "", submission: "", relay: "127.0.0.1:$P_RELAY2", http: "", local: ""}
listeners:
  relay: {proxy_protocol_from: [127.0.0.1/32]}
auth:
  # 127.0.0.1 is the proxy: trusting it must not open the relay to its clients
  trusted_networks: [127.0.0.5/32, 127.0.0.1/32]
  trusted_senders: ["*"]
dkim:
  keys:
    - {domain: example.com, selector: ed1, key_file: $WORK/keys/example.com.ed1.key}
delivery:
  transport: {plain.example: "[127.0.0.1]:$S_PLAIN"}
queue: {retry_min: 1s, retry_max: 2s}
EOF
"$INKAN" serve -config "$CFG2" >"$LOG/inkan-proxied.log" 2>&1 &
PIDS+=($!)
wait_port "$P_RELAY2" 20 || { show "$LOG/inkan-proxied.log"; fatal "serve (PROXY listener)" "port not open"; }
cat >"$WORK/haproxy.cfg" <<EOF
global
  pidfile $WORK/haproxy.pid
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend smtp
  bind 127.0.0.1:$P_HAP
  default_backend inkan
backend inkan
  server inkan 127.0.0.1:$P_RELAY2 send-proxy-v2
EOF
haproxy -c -f "$WORK/haproxy.cfg" >"$LOG/haproxy-check.log" 2>&1 || { show "$LOG/haproxy-check.log"; fatal "haproxy -c" "config refused"; }
haproxy -db -f "$WORK/haproxy.cfg" >"$LOG/haproxy.log" 2>&1 &
PIDS+=($!)
wait_port "$P_HAP" 10 || fatal "haproxy" "did not start"
timeout 30 swaks --timeout 15 -s 127.0.0.1 -p "$P_HAP" --local-interface 127.0.0.5 --helo device.example.com \
  --from device@example.com --to desk@plain.example --h-Subject clients-haproxy >"$LOG/swaks-haproxy.log" 2>&1 || true
if grep -q 'queued as' "$LOG/swaks-haproxy.log" && wait_count "$DUMP_PLAIN" clients-haproxy 1 30 &&
  $PY "$HERE/sinkdump.py" get "$DUMP_PLAIN" clients-haproxy "$WORK/haproxy.eml" &&
  grep -q 'Received: from device.example.com (\[127.0.0.5\])' "$WORK/haproxy.eml"; then
  pass "haproxy send-proxy-v2: client 127.0.0.5 (trusted) relayed, Received names 127.0.0.5, not the proxy"
else
  fail "haproxy send-proxy-v2: trusted client relayed with its own address in Received" "logs $LOG/swaks-haproxy.log, $LOG/inkan-proxied.log"
  grep -E '^(<-|<~|<\*\*) ' "$LOG/swaks-haproxy.log" | tail -n 5 | sed 's/^/     | /' || true
fi
timeout 30 swaks --timeout 15 -s 127.0.0.1 -p "$P_HAP" --local-interface 127.0.0.6 --helo stranger.example.com \
  --from stranger@example.com --to desk@plain.example --h-Subject clients-haproxy-stranger >"$LOG/swaks-haproxy-stranger.log" 2>&1 || true
if grep -Eq '^<\*\* +554 5\.7\.1' "$LOG/swaks-haproxy-stranger.log" && ! grep -q 'queued as' "$LOG/swaks-haproxy-stranger.log"; then
  pass "haproxy send-proxy-v2: client 127.0.0.6 refused 554 5.7.1 although the proxy's own address is trusted"
else
  fail "haproxy: untrusted client behind a trusted proxy refused" "log $LOG/swaks-haproxy-stranger.log"
fi
$PY - "$P_RELAY2" >"$LOG/unlisted-proxy.log" 2>&1 <<'EOF' && rc=0 || rc=$?
import socket, sys
s = socket.socket()
s.bind(("127.0.0.7", 0))
s.settimeout(10)
s.connect(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
print(f.readline().decode().strip())
s.sendall(b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 25\r\n")
line = f.readline().decode().strip()
print(line)
sys.exit(0 if line.startswith("554 5.7.0") and f.readline() == b"" else 1)
EOF
if [ "$rc" = 0 ] && grep -q 'PROXY header refused.*client=127.0.0.7' "$LOG/inkan-proxied.log"; then
  pass "PROXY header from 127.0.0.7 (not a listed proxy) refused: $(tail -n 1 "$LOG/unlisted-proxy.log")"
else
  fail "PROXY header from an unlisted address refused" "exit $rc, log $LOG/unlisted-proxy.log"
  show "$LOG/unlisted-proxy.log"
fi

finish
