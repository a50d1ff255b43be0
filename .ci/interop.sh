#!/usr/bin/env bash
# Interop checks: real mail software against a built inkan, all on loopback.
#
#   clients  swaks, msmtp, Python smtplib and Postfix (as a smarthost client,
#            a private instance: /etc/postfix and the system queue are not
#            touched) submit through inkan's smtps / submission / relay listeners;
#   DNS      dnsmasq serves the DKIM, SPF, DMARC and MX records (a second
#            dnsmasq answers on port 53 of a loopback address for the OpenDKIM
#            tools, which cannot use another port);
#   sink     an aiosmtpd server stands in for the MX host and saves every message;
#   verify   dkimpy and OpenDKIM (opendkim-testmsg, opendkim -t, opendkim-testkey)
#            check the signatures inkan added;
#   drop-in  OpenDKIM and inkan sign the same senders with the same KeyTable and
#            SigningTable; their d= / s= choices must agree sender by sender.
#
# Prints one PASS/FAIL line per check and "N passed, N failed"; exits 1 on any
# failure. Needs root (Postfix, port 53, a mount namespace for
# opendkim-testmsg) and the packages of .ci/install-deps.sh. Work files go to
# a fresh folder under $INTEROP_BASE (default /var/lib/inkan-interop: not
# /tmp, under which opendkim refuses its files); it is removed after a clean
# run and kept after a failed one (KEEP=1 keeps it always).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HERE=$ROOT/.ci/interop
PY=/usr/bin/python3 # Debian's python: python3-dkim and python3-aiosmtpd live there
BASE=${INTEROP_BASE:-/var/lib/inkan-interop}
LIMIT=${INTEROP_TIMEOUT:-280} # seconds for the whole run

# The whole run is bounded: re-run under timeout(1), whose TERM runs the cleanup.
if [ -z "${INTEROP_INNER:-}" ]; then
  INTEROP_INNER=1 exec timeout -k 15 "$LIMIT" bash "$0" "$@"
fi

# ---------- bookkeeping ----------
PASSED=0
FAILED=0
PIDS=()
POSTFIX_TOUCHED=0
START=$(date +%s)
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1${2:+ ($2)}"; FAILED=$((FAILED + 1)); }
note() { echo "     $*"; }
show() { [ -f "$1" ] && tail -n "${2:-25}" "$1" | sed 's/^/     | /'; return 0; }
# check NAME LOGFILE CMD...: PASS when CMD exits 0; on failure show the log.
check() {
  local name=$1 log=$2
  shift 2
  if "$@" >"$log" 2>&1; then pass "$name"; else fail "$name" "exit $?, log $log"; show "$log"; fi
}

mkdir -p "$BASE"
chmod 755 "$BASE"
exec 9>"$BASE/lock"
flock -w 60 9 || { echo "FAIL another interop run holds $BASE/lock"; exit 1; }
# leftovers of earlier runs (we hold the lock): a private Postfix left running
# by a killed run is stopped, then the folders go
for d in "$BASE"/run.*/postfix; do
  [ -s "$d/queue/pid/master.pid" ] && postfix -c "$d/conf" stop >/dev/null 2>&1 || true
done
rm -rf "$BASE"/run.*
WORK=$(mktemp -d "$BASE/run.XXXXXX")
LOG=$WORK/log
mkdir -p "$LOG"

stop_pid() { # PID: TERM, wait up to 5 s, then KILL
  local p=$1 i
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  declare -F stop_postfix >/dev/null && stop_postfix
  if [ "$rc" = 0 ] && [ "$FAILED" = 0 ] && [ -z "${KEEP:-}" ]; then
    rm -rf "$WORK"
    # Leave no trace outside the work folders: the base folder goes when no
    # other run's folder is in it (CI runs one at a time).
    if ! compgen -G "$BASE/run.*" >/dev/null; then rm -f "$BASE/lock" && rmdir "$BASE" 2>/dev/null; fi
  else
    echo "work files kept in $WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
on_term() {
  trap '' TERM INT # timeout(1) signals both its child and the process group: act once
  fail "run: finished within ${LIMIT}s" "interrupted or out of time; checks after this point did not run"
  echo
  echo "$PASSED passed, $FAILED failed ($(($(date +%s) - START))s)"
  exit 124
}
trap on_term TERM INT

finish() {
  echo
  echo "$PASSED passed, $FAILED failed ($(($(date +%s) - START))s)"
  [ "$FAILED" = 0 ] || exit 1
  exit 0
}
fatal() { fail "$1" "$2"; note "cannot go on without this"; finish; }

free_ports() { # N -> N free TCP ports on 127.0.0.1
  $PY -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])' "$1"
}
wait_port() { # PORT [SECONDS]: wait until 127.0.0.1:PORT accepts connections
  local i
  for i in $(seq $((${2:-15} * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# wait_subjects SECONDS SUBJECT...: wait until the sink has each subject
wait_subjects() {
  local secs=$1 s i missing
  shift
  for i in $(seq $((secs * 5))); do
    missing=0
    for s in "$@"; do
      cut -f2 "$SINK/index.tsv" 2>/dev/null | grep -qxF -- "$s" || { missing=1; break; }
    done
    [ "$missing" = 0 ] && return 0
    sleep 0.2
  done
  return 1
}
sink_files_for() { awk -F'\t' -v s="$1" '$2 == s {print $1}' "$SINK/index.tsv" 2>/dev/null; }

read -r P_SMTPS P_SUB P_RELAY P_HTTP P_SINK P_DNS P_EQ <<<"$(free_ports 7)"
echo "interop: work=$WORK ports smtps=$P_SMTPS submission=$P_SUB relay=$P_RELAY http=$P_HTTP sink=$P_SINK dns=$P_DNS"

# ---------- 1. build, keys ----------
INKAN=$WORK/inkan
if go build -o "$INKAN" ./cmd/inkan >"$LOG/build.log" 2>&1; then
  pass "build: go build ./cmd/inkan"
else
  show "$LOG/build.log" 40
  fatal "build: go build ./cmd/inkan" "see above"
fi

KEYS=$WORK/keys
mkdir -p "$KEYS"
for spec in ed1:ed25519 rsa1:rsa; do
  sel=${spec%%:*} alg=${spec##*:}
  if "$INKAN" dkim keygen -d example.com -s "$sel" -a "$alg" -o "$KEYS" >"$LOG/keygen-$sel.out" 2>"$LOG/keygen-$sel.err" &&
    [ -s "$KEYS/example.com.$sel.key" ]; then
    pass "keygen: inkan dkim keygen -a $alg -s $sel writes $KEYS/example.com.$sel.key"
  else
    cat "$LOG/keygen-$sel.out" "$LOG/keygen-$sel.err" | sed 's/^/     | /'
    fatal "keygen: inkan dkim keygen -a $alg -s $sel" "no key file"
  fi
done
ED_KEY=$KEYS/example.com.ed1.key
RSA_KEY=$KEYS/example.com.rsa1.key

# The TXT values, computed from the key files with openssl (not trusting inkan).
ED_P=$(openssl pkey -in "$ED_KEY" -pubout -outform DER 2>"$LOG/openssl-ed.err" | tail -c 32 | base64 -w0) || true
RSA_P=$(openssl pkey -in "$RSA_KEY" -pubout -outform DER 2>"$LOG/openssl-rsa.err" | base64 -w0) || true
ED_TXT="v=DKIM1; k=ed25519; p=$ED_P"
RSA_TXT="v=DKIM1; k=rsa; p=$RSA_P"
# keygen prints the record to publish; its p= must be the key's public key
printed_p() { tr -d '"\n\t ' <"$1" | grep -o 'p=[A-Za-z0-9+/=]*' | tail -1 | cut -d= -f2- || true; }
for sel in ed1 rsa1; do
  want=$ED_P
  [ "$sel" = rsa1 ] && want=$RSA_P
  got=$(printed_p "$LOG/keygen-$sel.out")
  if [ -n "$want" ] && [ "$got" = "$want" ]; then
    pass "keygen: printed TXT record for $sel matches the key (openssl)"
  else
    fail "keygen: printed TXT record for $sel matches the key (openssl)" "printed p=${got:0:24}... openssl p=${want:0:24}..."
    show "$LOG/keygen-$sel.out"
    [ -n "$want" ] || show "$LOG/openssl-${sel%1}.err"
  fi
done

# ---------- 2. DNS ----------
SPF_TXT="v=spf1 ip4:127.0.0.1 -all"
DMARC_TXT="v=DMARC1; p=reject; adkim=s; aspf=s"
DNSMAP=$WORK/dnsmap # "name TXT-value" for dkim_verify.py / dkimcheck.py
printf '%s %s\n' "ed1._domainkey.example.com" "$ED_TXT" "rsa1._domainkey.example.com" "$RSA_TXT" >"$DNSMAP"
txt_arg() { # NAME VALUE -> --txt-record=NAME,string,string (each <= 250 bytes)
  local out="--txt-record=$1" v=$2
  while [ -n "$v" ]; do out+=",${v:0:250}"; v=${v:250}; done
  printf '%s' "$out"
}
DNS_ARGS=(--keep-in-foreground --no-resolv --no-hosts --no-poll --bind-interfaces --user=root --group=root
  --local=/example.com/ --local=/example.net/ --local=/example.org/
  "$(txt_arg ed1._domainkey.example.com "$ED_TXT")"
  "$(txt_arg rsa1._domainkey.example.com "$RSA_TXT")"
  "$(txt_arg example.com "$SPF_TXT")"
  "$(txt_arg _dmarc.example.com "$DMARC_TXT")"
  --mx-host=example.net,mx.example.net,10 --host-record=mx.example.net,127.0.0.1)
start_dns() { # ADDR PORT NAME -> 0 when it answers
  dnsmasq "${DNS_ARGS[@]}" --listen-address="$1" --port="$2" --pid-file="$WORK/$3.pid" \
    --log-queries --log-facility="$LOG/$3.log" >"$LOG/$3.out" 2>&1 &
  local pid=$! i
  PIDS+=("$pid")
  for i in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || return 1
    $PY -c 'import dns.resolver,sys; r=dns.resolver.Resolver(configure=False); r.nameservers=[sys.argv[1]]; r.port=int(sys.argv[2]); r.lifetime=0.5; r.resolve("example.net","MX")' "$1" "$2" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
start_dns 127.0.0.1 "$P_DNS" dns || { show "$LOG/dns.out"; fatal "dns: dnsmasq on 127.0.0.1:$P_DNS" "did not start"; }
# dig-like check of every record, long TXT reassembled from its strings
dns_check() { # ADDR PORT
  $PY - "$1" "$2" "$DNSMAP" "$SPF_TXT" "$DMARC_TXT" <<'EOF'
import dns.resolver, sys
addr, port, dnsmap, spf, dmarc = sys.argv[1:]
r = dns.resolver.Resolver(configure=False); r.nameservers = [addr]; r.port = int(port); r.lifetime = 3
want = dict(l.rstrip("\n").split(" ", 1) for l in open(dnsmap))
want["example.com"] = spf; want["_dmarc.example.com"] = dmarc
bad = 0
for name, val in want.items():
    got = [b"".join(a.strings).decode() for a in r.resolve(name, "TXT")]
    lens = [[len(s) for s in a.strings] for a in r.resolve(name, "TXT")]
    ok = got == [val]; bad += not ok
    print("%s TXT %s strings=%s" % ("ok" if ok else "WRONG", name, lens))
mx = [(a.preference, str(a.exchange)) for a in r.resolve("example.net", "MX")]
a = [str(x) for x in r.resolve("mx.example.net", "A")]
ok = mx == [(10, "mx.example.net.")] and a == ["127.0.0.1"]; bad += not ok
print("%s MX example.net %s -> %s" % ("ok" if ok else "WRONG", mx, a))
sys.exit(1 if bad else 0)
EOF
}
check "dns: dnsmasq 127.0.0.1:$P_DNS serves DKIM (RSA split in <=255-byte strings), SPF, DMARC, MX" "$LOG/dns-check.log" dns_check 127.0.0.1 "$P_DNS"

# opendkim-testmsg uses the C library resolver, which only speaks to port 53
DNS53=""
for a in 127.0.53.53 127.0.0.153 127.53.0.1 127.0.0.253; do
  if start_dns "$a" 53 "dns53-$a"; then DNS53=$a; break; fi
done
if [ -n "$DNS53" ]; then
  check "dns: dnsmasq $DNS53:53 (for the OpenDKIM tools) serves the same records" "$LOG/dns53-check.log" dns_check "$DNS53" 53
  echo "nameserver $DNS53" >"$WORK/resolv.conf"
else
  fail "dns: dnsmasq on port 53 of a loopback address" "127.0.53.53, 127.0.0.153, 127.53.0.1, 127.0.0.253 all busy"
fi
# unbound (used by opendkim and opendkim-testkey) can use any port
cat >"$WORK/unbound.conf" <<EOF
server:
  do-not-query-localhost: no
  module-config: "iterator"
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$P_DNS
EOF

# ---------- 3. sink ----------
SINK=$WORK/sink
$PY "$HERE/sink.py" 127.0.0.1 "$P_SINK" "$SINK" >"$LOG/sink.log" 2>&1 &
PIDS+=($!)
wait_port "$P_SINK" 10 || { show "$LOG/sink.log"; fatal "sink: aiosmtpd on 127.0.0.1:$P_SINK" "did not start"; }

# ---------- 4. inkan ----------
PW=$(openssl rand -hex 12)
USERS=$WORK/users
CFG=$WORK/inkan.yaml
cat >"$CFG" <<EOF
hostname: inkan.example.com
data_dir: $WORK/inkan-data
listen:
  smtps: "127.0.0.1:$P_SMTPS"
  submission: "127.0.0.1:$P_SUB"
  relay: "127.0.0.1:$P_RELAY"
  http: "127.0.0.1:$P_HTTP"
auth:
  users_file: $USERS
  trusted_networks: [127.0.0.1/32]
  senders:
    alice: [alice@example.com]
dkim:
  keys:
    - {domain: example.com, selector: ed1, key_file: $ED_KEY}
    - {domain: example.com, selector: rsa1, key_file: $RSA_KEY}
  canonicalization: relaxed/relaxed
delivery:
  tls: may
  mx_port: $P_SINK
  resolver: "127.0.0.1:$P_DNS"
queue:
  retry_min: 1s
  retry_max: 5s
http:
  metrics: true
EOF
if printf '%s\n' "$PW" | "$INKAN" user add alice -config "$CFG" >"$LOG/user-add.log" 2>&1 && grep -q '^alice:' "$USERS"; then
  pass "user: inkan user add alice (password on stdin) writes $USERS"
else
  show "$LOG/user-add.log"
  fail "user: inkan user add alice (password on stdin)" "no alice line in $USERS"
fi
check "config: inkan check accepts the interop config" "$LOG/inkan-check.log" "$INKAN" check -config "$CFG"

"$INKAN" serve -config "$CFG" >"$LOG/inkan.log" 2>&1 &
INKAN_PID=$!
PIDS+=("$INKAN_PID")
for p in "$P_SMTPS" "$P_SUB" "$P_RELAY"; do
  wait_port "$p" 20 || { show "$LOG/inkan.log" 40; fatal "serve: inkan listening on 127.0.0.1:$P_SMTPS/$P_SUB/$P_RELAY" "port $p not open"; }
done
pass "serve: inkan listening on smtps $P_SMTPS, submission $P_SUB, relay $P_RELAY"

# ---------- 5. clients ----------
EXPECT=() # subjects that must reach the sink
TO=rcpt@example.net
# swaks_case NAME accept|CODE ARGS...: swaks with Subject "interop-NAME"; for
# "accept" the message must be queued (and is then expected at the sink), for
# a CODE the transcript must show that reply and no queued message.
swaks_case() {
  local name=$1 want=$2 log=$LOG/swaks-$1.log
  shift 2
  timeout 40 swaks --timeout 15 -s 127.0.0.1 --to "$TO" --helo client.example.com \
    --header "Subject: interop-$name" "$@" >"$log" 2>&1 || true
  if [ "$want" = accept ]; then
    grep -Eq '^<[-~]  250 .*queued as' "$log"
  else
    grep -Eq "^<(\*\*|~\*) +$want( |-)" "$log" && ! grep -q 'queued as' "$log"
  fi
}
swaks_check() { # DESCRIPTION NAME WANT ARGS...
  local desc=$1 name=$2 want=$3
  shift 3
  if swaks_case "$name" "$want" "$@"; then
    pass "$desc"
    if [ "$want" = accept ]; then EXPECT+=("interop-$name"); fi
  else
    fail "$desc" "log $LOG/swaks-$name.log"
    grep -E '^(<-|<~|<\*\*|<~\*|\*\*\*|->|~>) ' "$LOG/swaks-$name.log" | grep -Ev '^(->|~>) [A-Za-z0-9+/=]*$' | tail -n 12 | sed 's/^/     | /' || true
  fi
}
AUTH=(--auth-user alice --auth-password "$PW" --from alice@example.com)
swaks_check "swaks: 465 implicit TLS, AUTH PLAIN, accepted" 465-plain accept -p "$P_SMTPS" --tls-on-connect --auth PLAIN "${AUTH[@]}"
swaks_check "swaks: 465 implicit TLS, AUTH LOGIN, accepted" 465-login accept -p "$P_SMTPS" --tls-on-connect --auth LOGIN "${AUTH[@]}"
swaks_check "swaks: 587 STARTTLS, AUTH PLAIN, accepted" 587-plain accept -p "$P_SUB" -tls --auth PLAIN "${AUTH[@]}"
swaks_check "swaks: 587 STARTTLS, AUTH LOGIN, accepted" 587-login accept -p "$P_SUB" -tls --auth LOGIN "${AUTH[@]}"

# 587 without STARTTLS: EHLO must not offer AUTH, and swaks must not get to log in
timeout 30 swaks --timeout 15 -s 127.0.0.1 -p "$P_SUB" --helo client.example.com --quit-after EHLO >"$LOG/swaks-587-ehlo.log" 2>&1 || true
timeout 30 swaks --timeout 15 -s 127.0.0.1 -p "$P_SUB" --to "$TO" --helo client.example.com --auth PLAIN "${AUTH[@]}" \
  --header "Subject: interop-587-notls-auth" >"$LOG/swaks-587-notls-auth.log" 2>&1 || true
if grep -q '^<-  250' "$LOG/swaks-587-ehlo.log" && ! grep -Eiq '^<-  250[- ]AUTH' "$LOG/swaks-587-ehlo.log" &&
  grep -Eiq '^<-  250[- ]STARTTLS' "$LOG/swaks-587-ehlo.log" &&
  ! grep -Eq '^<[-~]  235' "$LOG/swaks-587-notls-auth.log" && ! grep -q 'queued as' "$LOG/swaks-587-notls-auth.log"; then
  pass "swaks: 587 without STARTTLS offers STARTTLS, not AUTH, and AUTH does not succeed"
else
  fail "swaks: 587 without STARTTLS offers STARTTLS, not AUTH, and AUTH does not succeed" "logs $LOG/swaks-587-ehlo.log, swaks-587-notls-auth.log"
  grep -E '^(<-|<~|<\*\*|<~\*|\*\*\*) ' "$LOG/swaks-587-ehlo.log" "$LOG/swaks-587-notls-auth.log" | tail -n 14 | sed 's/^/     | /' || true
fi
check "smtplib: 587 AUTH PLAIN before STARTTLS refused (5xx), AUTH offered only after STARTTLS" "$LOG/py-authbeforetls.log" \
  timeout 40 $PY "$HERE/smtpcheck.py" authbeforetls 127.0.0.1 "$P_SUB" alice "$PW"
cat "$LOG/py-authbeforetls.log" | sed 's/^/     /'

swaks_check "swaks: relay port from trusted 127.0.0.1 without AUTH, accepted" relay-trusted accept -p "$P_RELAY" --from relay@example.com

# untrusted source 127.0.0.2 without AUTH: refused everywhere, nothing queued
UNTRUSTED=(--local-interface 127.0.0.2 --from untrusted@example.com)
swaks_check "swaks: untrusted 127.0.0.2 without AUTH on 465 refused 530 5.7.0" untrusted-465 "530 5.7.0" -p "$P_SMTPS" --tls-on-connect "${UNTRUSTED[@]}"
swaks_check "swaks: untrusted 127.0.0.2 without AUTH on 587 (STARTTLS) refused 530 5.7.0" untrusted-587-tls "530 5.7.0" -p "$P_SUB" -tls "${UNTRUSTED[@]}"
swaks_check "swaks: untrusted 127.0.0.2 without AUTH on 587 (no TLS) refused 530" untrusted-587-plain "530" -p "$P_SUB" "${UNTRUSTED[@]}"
swaks_check "swaks: untrusted 127.0.0.2 on the relay port refused 554 5.7.1" untrusted-relay "554 5.7.1" -p "$P_RELAY" "${UNTRUSTED[@]}"
check "smtplib: untrusted 127.0.0.2 on the relay port refused 554" "$LOG/py-untrusted-relay.log" \
  timeout 40 $PY "$HERE/smtpcheck.py" untrusted 127.0.0.1 "$P_RELAY" plain 127.0.0.2 untrusted@example.com "$TO" interop-untrusted-py-relay 554
check "smtplib: untrusted 127.0.0.2 on 465 without AUTH refused 530" "$LOG/py-untrusted-465.log" \
  timeout 40 $PY "$HERE/smtpcheck.py" untrusted 127.0.0.1 "$P_SMTPS" ssl 127.0.0.2 untrusted@example.com "$TO" interop-untrusted-py-465 530

# a wrong password from its own address (127.0.0.3), so a lockout cannot hit the other checks
swaks_check "swaks: wrong password refused 535 5.7.8" wrong-password "535 5.7.8" -p "$P_SMTPS" --tls-on-connect --local-interface 127.0.0.3 \
  --auth PLAIN --auth-user alice --auth-password "wrong-$PW" --from alice@example.com
swaks_check "swaks: alice forging MAIL FROM bob@example.com refused 553" forged-from "553" -p "$P_SUB" -tls --auth PLAIN \
  --auth-user alice --auth-password "$PW" --from bob@example.com

# msmtp (STARTTLS on 587, certificate check off: inkan's cert is self-signed here)
MSMTPRC=$WORK/msmtprc
cat >"$MSMTPRC" <<EOF
defaults
tls on
tls_starttls on
tls_certcheck off
logfile $LOG/msmtp-session.log
account interop
host 127.0.0.1
port $P_SUB
auth on
user alice
password $PW
from alice@example.com
account default : interop
EOF
chmod 600 "$MSMTPRC"
printf 'From: alice@example.com\nTo: %s\nSubject: interop-msmtp\n\nSent by msmtp.\n' "$TO" |
  timeout 40 msmtp -C "$MSMTPRC" -a interop "$TO" >"$LOG/msmtp.log" 2>&1 && msmtp_rc=0 || msmtp_rc=$?
if [ "$msmtp_rc" = 0 ] && grep -q 'queued as' "$LOG/msmtp-session.log"; then
  pass "msmtp: 587 STARTTLS + AUTH, accepted"
  EXPECT+=(interop-msmtp)
else
  fail "msmtp: 587 STARTTLS + AUTH, accepted" "exit $msmtp_rc"
  show "$LOG/msmtp.log"
  show "$LOG/msmtp-session.log" 5
fi

for mode in ssl:$P_SMTPS starttls:$P_SUB; do
  m=${mode%%:*} port=${mode##*:}
  if timeout 40 $PY "$HERE/smtpcheck.py" "$m" 127.0.0.1 "$port" alice "$PW" alice@example.com "$TO" "interop-smtplib-$m" >"$LOG/py-$m.log" 2>&1; then
    pass "smtplib: $( [ "$m" = ssl ] && echo "SMTP_SSL on 465" || echo "SMTP starttls on 587"), login + send_message, accepted"
    EXPECT+=("interop-smtplib-$m")
  else
    fail "smtplib: $m login + send_message" "log $LOG/py-$m.log"
    show "$LOG/py-$m.log"
  fi
done

# ---------- Postfix as a smarthost client of inkan ----------
# Debian's Postfix binaries (smtp client, Cyrus SASL, TLS) with a private
# config and queue folder under $WORK ("postfix -c"), not /etc/postfix: the
# system instance may be in use (the benchmark drives it), and a private queue
# cannot hold mail from earlier runs. Same main.cf settings as a site would use.
PFDIR=$WORK/postfix
postfix_smarthost() {
  mkdir -p "$PFDIR/conf" "$PFDIR/queue" "$PFDIR/data" || return 1
  chmod 711 "$WORK" # the queue's postfix-owned subfolders live below it
  chmod 755 "$PFDIR" "$PFDIR/queue"
  chown postfix "$PFDIR/data" || return 1
  cp /etc/postfix/master.cf.proto "$PFDIR/conf/master.cf" 2>/dev/null || cp /usr/share/postfix/master.cf.dist "$PFDIR/conf/master.cf" || return 1
  : >"$PFDIR/conf/main.cf"
  postconf -c "$PFDIR/conf" -e compatibility_level=3.6 \
    queue_directory="$PFDIR/queue" data_directory="$PFDIR/data" \
    myhostname=postfix-client.example.com mydestination= \
    inet_interfaces=loopback-only inet_protocols=ipv4 mynetworks=127.0.0.0/8 \
    alias_maps= alias_database= local_transport=error:nolocal \
    "relayhost=[127.0.0.1]:$P_SUB" smtp_sasl_auth_enable=yes \
    smtp_sasl_password_maps="hash:$PFDIR/conf/sasl_passwd" smtp_sasl_security_options=noanonymous \
    smtp_tls_security_level=encrypt smtp_tls_loglevel=1 maillog_file="$LOG/postfix.log" || return 1
  # no chroot (no chroot environment here); no port 25 listener (mail comes in through sendmail)
  postconf -c "$PFDIR/conf" -F '*/*/chroot = n' || return 1
  postconf -c "$PFDIR/conf" -MX smtp/inet || return 1
  (umask 077 && printf '[127.0.0.1]:%s alice:%s\n' "$P_SUB" "$PW" >"$PFDIR/conf/sasl_passwd")
  postmap -c "$PFDIR/conf" "hash:$PFDIR/conf/sasl_passwd" || return 1
  POSTFIX_TOUCHED=1
  postfix -c "$PFDIR/conf" start || return 1
  printf 'From: alice@example.com\nTo: %s\nSubject: interop-postfix\n\nRelayed by Postfix through inkan.\n' "$TO" |
    timeout 20 /usr/sbin/sendmail -C "$PFDIR/conf" -i -f alice@example.com "$TO" || return 1
  if ! wait_subjects 40 interop-postfix; then
    echo "message did not reach the sink through Postfix -> inkan; Postfix log:"
    tail -n 20 "$LOG/postfix.log" 2>/dev/null
    return 1
  fi
  grep -E 'Untrusted TLS|Trusted TLS|Verified TLS' "$LOG/postfix.log" | tail -n 1
  grep -E 'status=sent' "$LOG/postfix.log" | tail -n 1
}
stop_postfix() {
  [ "$POSTFIX_TOUCHED" = 1 ] || return 0
  postfix -c "$PFDIR/conf" stop >/dev/null 2>&1 || true
  local m
  m=$(head -n 1 "$PFDIR/queue/pid/master.pid" 2>/dev/null | tr -d ' ' || true)
  [ -n "$m" ] && stop_pid "$m"
  POSTFIX_TOUCHED=0
}
if postfix_smarthost >"$LOG/postfix-check.log" 2>&1; then
  pass "postfix: sendmail -> Postfix (relayhost [127.0.0.1]:$P_SUB, SASL PLAIN, TLS encrypt) -> inkan -> sink"
  EXPECT+=(interop-postfix)
  sed 's/^/     /' "$LOG/postfix-check.log"
else
  fail "postfix: sendmail -> Postfix (relayhost, SASL, TLS encrypt) -> inkan -> sink" "log $LOG/postfix-check.log"
  show "$LOG/postfix-check.log"
fi
stop_postfix

# ---------- 6. at the sink ----------
if wait_subjects 60 "${EXPECT[@]}"; then
  pass "delivery: all ${#EXPECT[@]} accepted messages reached the sink through MX lookup on dnsmasq"
else
  miss=()
  for s in "${EXPECT[@]}"; do [ -n "$(sink_files_for "$s")" ] || miss+=("$s"); done
  fail "delivery: all ${#EXPECT[@]} accepted messages reached the sink" "missing: ${miss[*]}"
  show "$LOG/inkan.log" 15
fi
sleep 1 # a late duplicate or a wrongly accepted message would show up here
total=$(grep -c . "$SINK/index.tsv" 2>/dev/null || true)
dups=$(cut -f2 "$SINK/index.tsv" 2>/dev/null | sort | uniq -d | tr '\n' ' ' || true)
stray=$(cut -f2 "$SINK/index.tsv" 2>/dev/null | grep -E 'untrusted|wrong-password|forged|notls' | tr '\n' ' ' || true)
if [ "${total:-0}" = "${#EXPECT[@]}" ] && [ -z "$dups" ] && [ -z "$stray" ]; then
  pass "delivery: sink holds exactly the ${#EXPECT[@]} accepted messages (no duplicates, nothing from refused sessions)"
else
  fail "delivery: sink holds exactly the accepted messages" "sink=${total:-0} expected=${#EXPECT[@]} duplicates=[${dups}] refused-but-delivered=[${stray}]"
fi
"$INKAN" queue list -config "$CFG" >"$LOG/queue-list.log" 2>&1 && qrc=0 || qrc=$?
if [ "$qrc" = 0 ] && ! grep -Eq 'untrusted|bob@example.com' "$LOG/queue-list.log" && ! grep -Eq '[0-9A-Za-z]{6,}.*@' "$LOG/queue-list.log"; then
  pass "queue: inkan queue list shows nothing left (refused mail never queued)"
  note "$(head -n 3 "$LOG/queue-list.log" | tr '\n' ' ')"
else
  fail "queue: inkan queue list shows nothing left" "exit $qrc"
  show "$LOG/queue-list.log"
fi

mapfile -t DELIVERED < <(for s in "${EXPECT[@]}"; do sink_files_for "$s" | head -n 1; done | sed "s|^|$SINK/|")
if [ "${#DELIVERED[@]}" -gt 0 ]; then
  # bench/dkim_verify.py (copied to .ci/interop: CI runs on a bare clone) checks the first signature
  check "dkimpy: dkim_verify.py verifies all ${#DELIVERED[@]} delivered messages" "$LOG/dkim_verify.log" \
    $PY "$HERE/dkim_verify.py" "$DNSMAP" "${DELIVERED[@]}"
  check "dkimpy: every message carries ed25519-sha256 (s=ed1) and rsa-sha256 (s=rsa1) signatures that verify" "$LOG/dkimcheck.log" \
    $PY "$HERE/dkimcheck.py" verify "$DNSMAP" --require ed25519-sha256:example.com:ed1 --require rsa-sha256:example.com:rsa1 "${DELIVERED[@]}"
  # one copy per signature, so each OpenDKIM verdict is about one algorithm
  $PY "$HERE/dkimcheck.py" split "$WORK/split" "${DELIVERED[@]}" >"$LOG/split.log" 2>&1 || true
  for alg in rsa-sha256 ed25519-sha256; do
    mapfile -t ONE < <(ls "$WORK/split"/*."$alg".eml 2>/dev/null)
    if [ "${#ONE[@]}" != "${#DELIVERED[@]}" ]; then
      fail "opendkim: $alg signatures to verify" "found ${#ONE[@]} for ${#DELIVERED[@]} messages"
      continue
    fi
    if [ -n "$DNS53" ]; then
      # opendkim-testmsg (libopendkim, C library resolver): resolv.conf pointed at
      # $DNS53 in a private mount namespace, so the machine's resolver is untouched
      unshare -m bash -c 'mount --bind "$1" /etc/resolv.conf || exit 99; shift
        bad=0; for f; do if out=$(opendkim-testmsg <"$f" 2>&1); then echo "PASS $f"; else echo "FAIL $f: $out"; bad=1; fi; done; exit $bad' \
        _ "$WORK/resolv.conf" "${ONE[@]}" >"$LOG/testmsg-$alg.log" 2>&1 && trc=0 || trc=$?
      if [ "$trc" = 0 ]; then
        pass "opendkim-testmsg: verifies the $alg signature of all ${#ONE[@]} messages (DNS $DNS53:53)"
      else
        fail "opendkim-testmsg: verifies the $alg signature of all ${#ONE[@]} messages" "exit $trc, log $LOG/testmsg-$alg.log"
        show "$LOG/testmsg-$alg.log" 8
      fi
    fi
    # the milter's own code path (opendkim -t), resolving through unbound on the dnsmasq port
    cat >"$WORK/opendkim-verify.conf" <<EOF
Mode v
Syslog no
ResolverConfiguration $WORK/unbound.conf
EOF
    : >"$LOG/opendkim-t-$alg.log"
    bad=0
    for f in "${ONE[@]}"; do
      out=$(timeout 20 opendkim -x "$WORK/opendkim-verify.conf" -t "$f" 2>&1 | grep -v 'returned SMFIS' || true)
      echo "$out" >>"$LOG/opendkim-t-$alg.log"
      echo "$out" | grep -q 'verification (.*) succeeded' || bad=1
    done
    if [ "$bad" = 0 ]; then
      pass "opendkim -t (milter code): verifies the $alg signature of all ${#ONE[@]} messages"
    else
      fail "opendkim -t (milter code): verifies the $alg signature of all messages" "log $LOG/opendkim-t-$alg.log"
      grep -v succeeded "$LOG/opendkim-t-$alg.log" | head -n 6 | sed 's/^/     | /' || true
    fi
  done
else
  fail "dkim: messages to verify" "nothing was delivered"
fi
# opendkim-testkey: the published rsa1 record against the private key (it cannot check Ed25519 keys)
echo "ResolverConfiguration $WORK/unbound.conf" >"$WORK/testkey.conf"
if timeout 30 opendkim-testkey -x "$WORK/testkey.conf" -d example.com -s rsa1 -k "$RSA_KEY" -vvv >"$LOG/testkey.log" 2>&1 &&
  grep -q 'key OK' "$LOG/testkey.log"; then
  pass "opendkim-testkey: rsa1._domainkey.example.com matches $RSA_KEY (key OK)"
else
  fail "opendkim-testkey: rsa1._domainkey.example.com matches the key" "log $LOG/testkey.log"
  show "$LOG/testkey.log"
fi

stop_pid "$INKAN_PID"

# ---------- 7. OpenDKIM drop-in equivalence ----------
EQ=$WORK/eqv
EQKEYS=$EQ/keys
mkdir -p "$EQKEYS"
eq_keys() {
  local d s
  for ds in example.com:mail sub.example.org:s2024 example.org:org1 other.test:pf; do
    d=${ds%%:*} s=${ds##*:}
    opendkim-genkey -b 2048 -d "$d" -s "$s" -D "$EQKEYS" || return 1
    mv "$EQKEYS/$s.private" "$EQKEYS/$d.$s.private" || return 1
    mv "$EQKEYS/$s.txt" "$EQKEYS/$d.$s.txt" || return 1
  done
  opendkim-genkey -b 2048 -d example.invalid -s catchall -D "$EQKEYS" || return 1
  "$INKAN" dkim keygen -d example.com -s alt -a rsa -o "$EQKEYS" >/dev/null || return 1
  "$INKAN" dkim keygen -d example.net -s net1 -a rsa -o "$EQKEYS" >/dev/null || return 1
  chmod 600 "$EQKEYS"/*.private "$EQKEYS"/*.key || return 1
  sed "s|@KEYDIR@|$EQKEYS|g" "$HERE/opendkim/KeyTable.in" >"$EQ/KeyTable" || return 1
  cp "$HERE"/opendkim/SigningTable.* "$HERE/opendkim/senders.txt" "$EQ/"
}
if ! eq_keys >"$LOG/eqv-keys.log" 2>&1; then
  show "$LOG/eqv-keys.log"
  fail "drop-in: keys for the KeyTable fixture" "see above"
else
  # variant: signing table, multiple signatures, how inkan is pointed at it
  VARIANTS=("refile refile:$EQ/SigningTable.refile no tables"
    "refile-nocatch refile:$EQ/SigningTable.refile-nocatch no tables"
    "exact file:$EQ/SigningTable.exact no tables"
    "multi refile:$EQ/SigningTable.refile-multi yes conf")
  for v in "${VARIANTS[@]}"; do
    read -r name table multi how <<<"$v"
    conf=$EQ/opendkim-$name.conf
    cat >"$conf" <<EOF
# what a Postfix+OpenDKIM site would have; inkan reads it as-is in the "conf" variant
Mode s
Syslog no
Canonicalization relaxed/relaxed
KeyTable $EQ/KeyTable
SigningTable $table
MultipleSignatures $multi
EOF
    if [ "$how" = conf ]; then
      dkimcfg="  opendkim_conf: $conf"
    else
      dkimcfg="  key_table: $EQ/KeyTable
  signing_table: $table
  multiple_signatures: $([ "$multi" = yes ] && echo true || echo false)"
    fi
    cat >"$EQ/inkan-$name.yaml" <<EOF
hostname: inkan.example.com
data_dir: $EQ/data-$name
listen: {smtps: "", submission: "", relay: "127.0.0.1:$P_EQ", http: ""}
auth:
  trusted_networks: [127.0.0.1/32]
dkim:
$dkimcfg
  canonicalization: relaxed/relaxed
delivery: {tls: may, mx_port: $P_SINK, resolver: "127.0.0.1:$P_DNS"}
queue: {retry_min: 1s, retry_max: 5s}
EOF
    # real OpenDKIM: the milter's test mode (-t) runs the callbacks Postfix would
    # drive (same SigningTable/KeyTable code) and prints the header it would
    # insert; one process per message, in parallel. Then inkan dkim explain.
    n=0
    addrs=()
    odpids=()
    date=$(date -R)
    while IFS= read -r from; do
      case $from in '' | '#'*) continue ;; esac
      n=$((n + 1))
      printf 'From: %s\nTo: %s\nSubject: eqv-%s-%d\nDate: %s\nMessage-ID: <eqv-%s-%d@interop.example.com>\n\nEquivalence test.\n' \
        "$from" "$TO" "$name" "$n" "$date" "$name" "$n" >"$EQ/msg-$name-$n.eml"
      timeout 20 opendkim -vv -x "$conf" -t "$EQ/msg-$name-$n.eml" >"$EQ/od-$name-$n.out" 2>&1 &
      odpids+=($!)
      addr=${from##*<}
      addrs+=("${addr%>}")
    done <"$EQ/senders.txt"
    PIDS+=("${odpids[@]}")
    for p in "${odpids[@]}"; do wait "$p" || true; done
    timeout 30 "$INKAN" dkim explain "${addrs[@]}" -config "$EQ/inkan-$name.yaml" >"$EQ/explain-$name.out" 2>&1 || true
    "$INKAN" serve -config "$EQ/inkan-$name.yaml" >"$LOG/inkan-eqv-$name.log" 2>&1 &
    epid=$!
    PIDS+=("$epid")
    if ! wait_port "$P_EQ" 20; then
      fail "drop-in ($name): inkan with the same KeyTable/SigningTable starts" "log $LOG/inkan-eqv-$name.log"
      show "$LOG/inkan-eqv-$name.log"
      stop_pid "$epid"
      continue
    fi
    timeout 60 $PY "$HERE/smtpcheck.py" eqvsend 127.0.0.1 "$P_EQ" "$TO" "$name" "$EQ/senders.txt" >"$LOG/eqv-send-$name.log" 2>&1 || true
    subjects=()
    for i in $(seq "$n"); do grep -q "^ok .* #$i From" "$LOG/eqv-send-$name.log" && subjects+=("eqv-$name-$i"); done
    wait_subjects 30 "${subjects[@]}" || true
    stop_pid "$epid"
    echo "drop-in ($name): SigningTable $table, MultipleSignatures $multi, inkan via $([ "$how" = conf ] && echo "dkim.opendkim_conf" || echo "dkim.key_table/signing_table")"
    if $PY "$HERE/eqv.py" "$name" "$EQ/senders.txt" "$EQ" "$SINK" >"$LOG/eqv-$name.log" 2>&1; then eok=0; else eok=1; fi
    cat "$LOG/eqv-$name.log"
    grep '^UNEXPECTED' "$LOG/eqv-send-$name.log" | sed 's/^/     inkan refused: /' || true
    if [ "$eok" = 0 ]; then
      pass "drop-in ($name): OpenDKIM and inkan choose the same d=/s= for all $n senders"
    else
      fail "drop-in ($name): OpenDKIM and inkan choose the same d=/s= for all $n senders" "see table"
    fi
    if grep -q '^explain mismatches: 0$' "$LOG/eqv-$name.log"; then
      pass "drop-in ($name): inkan dkim explain names exactly the signatures inkan made"
    else
      fail "drop-in ($name): inkan dkim explain names exactly the signatures inkan made" "compare the last two columns; output in $EQ/explain-$name.out"
    fi
  done
fi

finish
