#!/usr/bin/env bash
# Receiver checks (issue 23): what inkan sends, handed to a receiving mail
# system configured as real MX hosts are, all on loopback.
#
#   receiver  a private Postfix (postfix -c DIR, chroot off) is the MX of
#             example.net: reject_non_fqdn_helo_hostname, reject_non_fqdn_sender,
#             strict_rfc821_envelopes, smtpd_forbid_bare_newline; OpenDKIM
#             (verifying) and OpenDMARC (p=reject published, RejectFailures) as
#             milters; delivery to a Maildir. A second smtpd of the same Postfix
#             hides 8BITMIME (the 7-bit next hop of example.org).
#   DNS       dnsmasq on a loopback port (for inkan) and on
#             port 53 of a loopback address (OpenDKIM and OpenDMARC; OpenDMARC
#             uses the C resolver, in a mount namespace whose resolv.conf points there).
#   senders   through inkan: Thunderbird-style submission (587, STARTTLS, AUTH,
#             MIME), a LAN device on the relay port (HELO without a domain, no
#             Date or Message-ID, bare LF, unlabelled 8-bit, scanner@localhost),
#             a trusted client with MAIL FROM:<root>, and `inkan sendmail -t`
#             from cron and from PHP (php-cli mail(), as www-data) on a host
#             named web01 (a UTS namespace).
#   verdict   each accepted, exactly one copy in the Maildir, dkim=pass and
#             dmarc=pass in the receiver's own Authentication-Results; 8-bit
#             mail never reaches the 7-bit next hop (bounced 5.6.3) while 7-bit
#             mail does.
#   reference the same inputs through Postfix + OpenDKIM set up as the guides
#             do (myorigin = $mydomain, mynetworks trusted, OpenDKIM signing
#             milter), into the same receiver; printed side by side, with
#             "inkan does better" where it does. The reference never fails
#             the run: it is what inkan replaces.
#
# Prints one PASS/FAIL line per check and "N passed, N failed"; exits 1 on any
# failure. Needs root and the packages of .ci/install-deps.sh. Work files go
# to a fresh folder under $RECEIVER_BASE (default /var/lib/inkan-receiver;
# OpenDKIM refuses files under /tmp), removed after a clean run and kept after
# a failed one (KEEP=1 keeps it always).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HERE=$ROOT/.ci/receiver
PY=/usr/bin/python3
BASE=${RECEIVER_BASE:-/var/lib/inkan-receiver}
LIMIT=${RECEIVER_TIMEOUT:-240} # seconds for the whole run

if [ -z "${RECEIVER_INNER:-}" ]; then
  RECEIVER_INNER=1 exec timeout -k 15 "$LIMIT" bash "$0" "$@"
fi

# ---------- bookkeeping ----------
PASSED=0
FAILED=0
PIDS=()
POSTFIXES=()
START=$(date +%s)
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1${2:+ ($2)}"; FAILED=$((FAILED + 1)); }
note() { echo "     $*"; }
show() { [ -f "$1" ] && tail -n "${2:-25}" "$1" | sed 's/^/     | /'; return 0; }

mkdir -p "$BASE"
chmod 755 "$BASE"
exec 9>"$BASE/lock"
flock -w 60 9 || { echo "FAIL another receiver run holds $BASE/lock"; exit 1; }
for d in "$BASE"/run.*/pf-*; do
  [ -s "$d/queue/pid/master.pid" ] && postfix -c "$d/conf" stop >/dev/null 2>&1 || true
done
rm -rf "$BASE"/run.*
WORK=$(mktemp -d "$BASE/run.XXXXXX")
chmod 711 "$WORK" # Postfix's queue folders and the local socket live below it
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
stop_postfix() { # DIR
  local m
  postfix -c "$1/conf" stop >/dev/null 2>&1 || true
  m=$(head -n 1 "$1/queue/pid/master.pid" 2>/dev/null | tr -d ' ' || true)
  [ -n "$m" ] && stop_pid "$m"
  return 0
}
cleanup() {
  local rc=$? p
  set +e
  for p in "${POSTFIXES[@]}"; do stop_postfix "$p"; done
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "$rc" = 0 ] && [ "$FAILED" = 0 ] && [ -z "${KEEP:-}" ]; then
    rm -rf "$WORK"
    # No trace outside the work folders: the base folder goes with the last run.
    if ! compgen -G "$BASE/run.*" >/dev/null; then rm -f "$BASE/lock" && rmdir "$BASE" 2>/dev/null; fi
  else
    echo "work files kept in $WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
on_term() {
  trap '' TERM INT
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

free_ports() { $PY .ci/free-ports.py "$1"; } # N -> N distinct free ports
wait_port() { # PORT [SECONDS]
  local i
  for i in $(seq $((${2:-15} * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

read -r P_SMTPS P_SUB P_RELAY P_HTTP P_DNS P_MX P_MX7 P_DKIMV P_DMARC P_REF P_DKIMS <<<"$(free_ports 11)"
echo "receiver: work=$WORK inkan relay=$P_RELAY submission=$P_SUB; receiver MX 127.0.0.1:$P_MX (7-bit: $P_MX7)"

# ---------- build, keys ----------
INKAN=$WORK/inkan
if go build -o "$INKAN" ./cmd/inkan >"$LOG/build.log" 2>&1; then
  chmod 755 "$INKAN"
  pass "build: go build ./cmd/inkan"
else
  show "$LOG/build.log" 40
  fatal "build: go build ./cmd/inkan" "see above"
fi
KEYS=$WORK/keys
mkdir -p "$KEYS"
"$INKAN" dkim keygen -d example.com -s rsa1 -a rsa -o "$KEYS" >"$LOG/keygen.log" 2>&1 || { show "$LOG/keygen.log"; fatal "keygen" "no key"; }
RSA_KEY=$KEYS/example.com.rsa1.key
RSA_P=$(openssl pkey -in "$RSA_KEY" -pubout -outform DER 2>/dev/null | base64 -w0)

# ---------- DNS ----------
# SPF authorizes nobody: DMARC can pass only through an aligned DKIM signature.
txt_arg() { # NAME VALUE -> --txt-record=NAME,string,string (each <= 250 bytes)
  local out="--txt-record=$1" v=$2
  while [ -n "$v" ]; do out+=",${v:0:250}"; v=${v:250}; done
  printf '%s' "$out"
}
DNS_ARGS=(--keep-in-foreground --no-resolv --no-hosts --no-poll --bind-interfaces --user=root --group=root
  --local=/example.com/ --local=/example.net/ --local=/example.org/
  "$(txt_arg rsa1._domainkey.example.com "v=DKIM1; k=rsa; p=$RSA_P")"
  "$(txt_arg example.com "v=spf1 -all")"
  "$(txt_arg _dmarc.example.com "v=DMARC1; p=reject; adkim=s; aspf=s")"
  --mx-host=example.net,mx.example.net,10 --host-record=mx.example.net,127.0.0.1)
start_dns() { # ADDR PORT NAME
  dnsmasq "${DNS_ARGS[@]}" --listen-address="$1" --port="$2" --pid-file="$WORK/$3.pid" \
    --log-queries --log-facility="$LOG/$3.log" >"$LOG/$3.out" 2>&1 &
  local pid=$! i
  PIDS+=("$pid")
  for i in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || return 1
    $PY -c 'import dns.resolver,sys; r=dns.resolver.Resolver(configure=False); r.nameservers=[sys.argv[1]]; r.port=int(sys.argv[2]); r.lifetime=0.5; r.resolve("_dmarc.example.com","TXT")' "$1" "$2" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
start_dns 127.0.0.1 "$P_DNS" dns || { show "$LOG/dns.out"; fatal "dns: dnsmasq on 127.0.0.1:$P_DNS" "did not start"; }
DNS53=""
for a in 127.0.54.54 127.0.0.154 127.54.0.1 127.0.0.254; do
  if start_dns "$a" 53 "dns53-$a"; then DNS53=$a; break; fi
done
[ -n "$DNS53" ] || fatal "dns: dnsmasq on port 53 of a loopback address (for OpenDMARC)" "127.0.54.54, 127.0.0.154, 127.54.0.1, 127.0.0.254 all busy"
echo "nameserver $DNS53" >"$WORK/resolv.conf"
pass "dns: dnsmasq serves the DKIM key, SPF -all, DMARC p=reject (127.0.0.1:$P_DNS and $DNS53:53)"

# ---------- milters of the receiver ----------
# OpenDKIM asks $DNS53 (Nameservers): its ResolverConfiguration file is read
# by libunbound's parser, which is not safe when verifications start at once.
cat >"$WORK/opendkim-verify.conf" <<EOF
Mode v
Socket inet:$P_DKIMV@127.0.0.1
AuthservID mx.example.net
AlwaysAddARHeader yes
Nameservers $DNS53
Background no
Syslog no
PidFile $WORK/opendkim-verify.pid
EOF
opendkim -f -x "$WORK/opendkim-verify.conf" >"$LOG/opendkim-verify.log" 2>&1 &
PIDS+=($!)
echo "192.0.2.1" >"$WORK/dmarc-ignore" # the default ignores 127.0.0.1: check everyone
cat >"$WORK/opendmarc.conf" <<EOF
Socket inet:$P_DMARC@127.0.0.1
AuthservID mx.example.net
TrustedAuthservIDs mx.example.net
RejectFailures true
IgnoreHosts $WORK/dmarc-ignore
IgnoreAuthenticatedClients false
SPFIgnoreResults true
SPFSelfValidate false
FailureReports false
Background false
Syslog false
PidFile $WORK/opendmarc.pid
EOF
unshare -m bash -c 'mount --bind "$1" /etc/resolv.conf || exit 99; exec opendmarc -f -c "$2"' _ "$WORK/resolv.conf" "$WORK/opendmarc.conf" \
  >"$LOG/opendmarc.log" 2>&1 &
PIDS+=($!)
if wait_port "$P_DKIMV" 10 && wait_port "$P_DMARC" 10; then
  pass "milters: OpenDKIM (verifying) on $P_DKIMV, OpenDMARC (RejectFailures, p=reject) on $P_DMARC"
else
  show "$LOG/opendkim-verify.log"
  show "$LOG/opendmarc.log"
  fatal "milters: OpenDKIM and OpenDMARC listening" "see logs"
fi

# ---------- Postfix instances ----------
# new_postfix NAME: a private instance under $WORK/pf-NAME (config, queue,
# data), chroot off, no default smtpd; then postconf -c "$PF/conf" ... sets it.
new_postfix() {
  PF=$WORK/pf-$1
  mkdir -p "$PF/conf" "$PF/queue" "$PF/data"
  chmod 755 "$PF" "$PF/queue"
  chown postfix "$PF/data"
  cp /etc/postfix/master.cf.proto "$PF/conf/master.cf" 2>/dev/null || cp /usr/share/postfix/master.cf.dist "$PF/conf/master.cf"
  : >"$PF/conf/main.cf"
  postconf -c "$PF/conf" -e compatibility_level=3.6 queue_directory="$PF/queue" data_directory="$PF/data" \
    inet_interfaces=loopback-only inet_protocols=ipv4 alias_maps= alias_database= \
    maillog_file="$LOG/postfix-$1.log" smtputf8_enable=no
  postconf -c "$PF/conf" -F '*/*/chroot = n'
  postconf -c "$PF/conf" -MX smtp/inet
}
start_postfix() { # NAME
  POSTFIXES+=("$WORK/pf-$1")
  postfix -c "$WORK/pf-$1/conf" start >"$LOG/postfix-$1.start" 2>&1
}

# The receiver: MX of example.net and example.org, as strict as real MX hosts.
MAIL=$WORK/mail
mkdir -p "$MAIL"
chown nobody:nogroup "$MAIL"
new_postfix rx
postconf -c "$PF/conf" -e myhostname=mx.example.net mydomain=example.net mydestination= \
  mynetworks=192.0.2.1/32 local_transport=error:nolocal \
  virtual_mailbox_domains="example.net, example.org" virtual_mailbox_base="$MAIL" \
  "virtual_mailbox_maps=static:inbox/" "virtual_uid_maps=static:$(id -u nobody)" "virtual_gid_maps=static:$(id -g nobody)" \
  smtpd_helo_required=yes \
  "smtpd_helo_restrictions=reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname" \
  smtpd_sender_restrictions=reject_non_fqdn_sender \
  "smtpd_recipient_restrictions=reject_non_fqdn_recipient, reject_unauth_destination" \
  strict_rfc821_envelopes=yes smtpd_forbid_bare_newline=yes smtpd_forbid_bare_newline_exclusions= \
  "smtpd_milters=inet:127.0.0.1:$P_DKIMV, inet:127.0.0.1:$P_DMARC" milter_default_action=tempfail
postconf -c "$PF/conf" -M "127.0.0.1:$P_MX/inet=127.0.0.1:$P_MX inet n - n - - smtpd"
postconf -c "$PF/conf" -M "127.0.0.1:$P_MX7/inet=127.0.0.1:$P_MX7 inet n - n - - smtpd -o smtpd_discard_ehlo_keywords=8bitmime"
RX=$PF
if start_postfix rx && wait_port "$P_MX" 15 && wait_port "$P_MX7" 5; then
  pass "receiver: Postfix $(postconf -d -h mail_version) on 127.0.0.1:$P_MX (and $P_MX7 without 8BITMIME), milters OpenDKIM + OpenDMARC, Maildir"
else
  show "$LOG/postfix-rx.start"
  show "$LOG/postfix-rx.log"
  fatal "receiver: Postfix listening" "see logs"
fi

# ---------- inkan ----------
PW=$(openssl rand -hex 12)
CFG=$WORK/inkan.yaml
cat >"$CFG" <<EOF
hostname: mail.example.com
data_dir: $WORK/inkan-data
listen:
  smtps: "127.0.0.1:$P_SMTPS"
  submission: "127.0.0.1:$P_SUB"
  relay: "127.0.0.1:$P_RELAY"
  http: "127.0.0.1:$P_HTTP"
auth:
  users_file: $WORK/users
  trusted_networks: [127.0.0.1/32]
  senders:
    alice: [alice@example.com]
  networks:
    - name: lan-devices
      cidrs: [127.0.0.2/32]
      senders: ["@example.com"]
dkim:
  keys:
    - {domain: example.com, selector: rsa1, key_file: $RSA_KEY}
delivery:
  tls: may
  mx_port: $P_MX
  resolver: "127.0.0.1:$P_DNS"
  transport:
    example.org: "[127.0.0.1]:$P_MX7"
queue:
  retry_min: 1s
  retry_max: 5s
EOF
chmod 644 "$CFG"
printf '%s\n' "$PW" | "$INKAN" user add alice -config "$CFG" >"$LOG/user-add.log" 2>&1 || { show "$LOG/user-add.log"; fatal "user add" "failed"; }
"$INKAN" check -print -config "$CFG" >"$LOG/check.out" 2>"$LOG/check.err" || { show "$LOG/check.err"; fatal "inkan check" "refused the config"; }
if grep -q '^# rewrite: origin domain: example.com (rewrite.origin_domain unset: the only DKIM signing domain)' "$LOG/check.out"; then
  pass "inkan check -print: origin domain example.com, derived (the only signing domain)"
else
  fail "inkan check -print: origin domain example.com" "log $LOG/check.out"
  grep '^# rewrite' "$LOG/check.out" | sed 's/^/     | /' || true
fi
"$INKAN" serve -config "$CFG" >"$LOG/inkan.log" 2>&1 &
PIDS+=($!)
for p in "$P_SMTPS" "$P_SUB" "$P_RELAY"; do
  wait_port "$p" 20 || { show "$LOG/inkan.log" 40; fatal "serve: inkan listening" "port $p not open"; }
done
pass "serve: inkan listening (relay $P_RELAY, submission $P_SUB)"

# ---------- the inputs ----------
TO=ops@example.net
INPUTS=$WORK/inputs
mkdir -p "$INPUTS"
# Thunderbird: MIME, Date and Message-ID, a display name, 8-bit labelled.
printf 'Message-ID: <c0ffee01-rx@example.com>\r\nDate: %s\r\nMIME-Version: 1.0\r\nUser-Agent: Mozilla Thunderbird\r\nContent-Language: de-DE\r\nTo: %s\r\nFrom: Alice <alice@example.com>\r\nSubject: Quartalszahlen rx-thunderbird\r\nContent-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe aus Thunderbird.\r\n' \
  "$(date -R)" "$TO" >"$INPUTS/thunderbird.eml"
# A LAN scanner: bare LF, no Date or Message-ID, unlabelled UTF-8, a From
# the device was set up with (scanner@localhost).
printf 'From: scanner@localhost\nTo: %s\nSubject: Scan to mail rx-lan\n\nScan complete: B\xc3\xbcrokopie.pdf (3 pages)\n' "$TO" >"$INPUTS/lan.eml"
# A script on a trusted host: MAIL FROM:<root> and From: root.
printf 'From: root\r\nTo: %s\r\nSubject: disk report rx-root\r\n\r\n/ 81%% used\r\n' "$TO" >"$INPUTS/root.eml"
# cron (cronie's headers, MAILTO=ops@example.net), on host web01.
printf 'From: root (Cron Daemon)\nTo: %s\nSubject: Cron <root@web01> /usr/local/bin/backup rx-cron\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\nX-Cron-Env: <HOME=/root>\n\nbackup done: 3 files\n' "$TO" >"$INPUTS/cron.eml"
PHP_CODE='mail("'$TO'", "Order confirmation rx-php", "Danke f\u{fc}r Ihre Bestellung.\n");'

# send_inkan NAME: one input into inkan, as that kind of client does.
send_inkan() {
  case $1 in
  thunderbird)
    timeout 40 swaks --timeout 15 -s 127.0.0.1 -p "$P_SUB" -tls --helo '[127.0.0.1]' --auth PLAIN --auth-user alice --auth-password "$PW" \
      --from alice@example.com --to "$TO" --data "@$INPUTS/thunderbird.eml" >"$LOG/in-$1.log" 2>&1 && grep -q 'queued as' "$LOG/in-$1.log" ;;
  lan)
    timeout 40 $PY "$HERE/rawsmtp.py" 127.0.0.1 "$P_RELAY" 127.0.0.2 "HELO NPI3A2B1" scanner@localhost "$TO" "$INPUTS/lan.eml" >"$LOG/in-$1.log" 2>&1 ;;
  root)
    timeout 40 $PY "$HERE/rawsmtp.py" 127.0.0.1 "$P_RELAY" 127.0.0.1 "EHLO app.example.com" root "$TO" "$INPUTS/root.eml" >"$LOG/in-$1.log" 2>&1 ;;
  cron)
    unshare -u bash -c 'hostname web01 && exec "$@"' _ env INKAN_CONFIG="$CFG" \
      "$INKAN" sendmail -FCronDaemon -i -odi -oem -oi -t -f root <"$INPUTS/cron.eml" >"$LOG/in-$1.log" 2>&1 ;;
  php)
    unshare -u bash -c 'hostname web01 && exec "$@"' _ runuser -u www-data -- env INKAN_CONFIG="$CFG" \
      php -n -d "sendmail_path=$INKAN sendmail -t -i" -r "exit(mail(\"$TO\", \"Order confirmation rx-php\", \"Danke f\\u{fc}r Ihre Bestellung.\\n\") ? 0 : 1);" \
      >"$LOG/in-$1.log" 2>&1 ;;
  esac
}
NAMES=(thunderbird lan root cron php)
declare -A SUBJECT=([thunderbird]=rx-thunderbird [lan]=rx-lan [root]=rx-root [cron]=rx-cron [php]=rx-php)
declare -A WHAT=([thunderbird]="Thunderbird-style submission (587, STARTTLS, AUTH PLAIN, MIME)"
  [lan]="LAN device on the relay port (HELO NPI3A2B1, no Date/Message-ID, bare LF, unlabelled 8-bit, scanner@localhost)"
  [root]="trusted client, MAIL FROM:<root>, From: root"
  [cron]="inkan sendmail -t from cron on host web01 (From: root (Cron Daemon))"
  [php]="inkan sendmail -t from PHP mail() as www-data on host web01")
declare -A ACCEPTED INKAN_RESULT
for n in "${NAMES[@]}"; do
  if send_inkan "$n"; then
    ACCEPTED[$n]=1
    pass "inkan accepts: ${WHAT[$n]}"
  else
    ACCEPTED[$n]=0
    fail "inkan accepts: ${WHAT[$n]}" "log $LOG/in-$n.log"
    show "$LOG/in-$n.log" 12
  fi
done

# ---------- 8-bit and the 7-bit next hop ----------
printf 'From: scanner@example.com\r\nTo: ops@example.org\r\nSubject: 8-bit to a 7-bit hop rx-8to7\r\n\r\nB\xc3\xbcrokopie\r\n' >"$INPUTS/8to7.eml"
printf 'From: scanner@example.com\r\nTo: ops@example.org\r\nSubject: 7-bit to a 7-bit hop rx-7to7\r\n\r\nplain text\r\n' >"$INPUTS/7to7.eml"
timeout 40 $PY "$HERE/rawsmtp.py" 127.0.0.1 "$P_RELAY" 127.0.0.2 "HELO NPI3A2B1" scanner@example.com ops@example.org "$INPUTS/8to7.eml" >"$LOG/in-8to7.log" 2>&1 || fail "inkan accepts the 8-bit message for the 7-bit next hop" "log $LOG/in-8to7.log"
timeout 40 $PY "$HERE/rawsmtp.py" 127.0.0.1 "$P_RELAY" 127.0.0.2 "HELO NPI3A2B1" scanner@example.com ops@example.org "$INPUTS/7to7.eml" >"$LOG/in-7to7.log" 2>&1 || fail "inkan accepts the 7-bit message for the 7-bit next hop" "log $LOG/in-7to7.log"

# ---------- what the receiver got ----------
# wait_mail SECONDS SUBJECT...: until each subject is in the Maildir
wait_mail() {
  local secs=$1 i s missing
  shift
  for i in $(seq $((secs * 5))); do
    missing=0
    for s in "$@"; do
      grep -rlsF -- "$s" "$MAIL/inbox/new" >/dev/null || { missing=1; break; }
    done
    [ "$missing" = 0 ] && return 0
    sleep 0.2
  done
  return 1
}
WANT=()
for n in "${NAMES[@]}"; do [ "${ACCEPTED[$n]}" = 1 ] && WANT+=("${SUBJECT[$n]}"); done
WANT+=(rx-7to7)
wait_mail 60 "${WANT[@]}" || note "not every message arrived within 60s"
sleep 2 # a duplicate would come right behind
for n in "${NAMES[@]}"; do
  [ "${ACCEPTED[$n]}" = 1 ] || continue
  if line=$($PY "$HERE/maildir.py" "$MAIL/inbox" mx.example.net "${SUBJECT[$n]}"); then
    pass "receiver: ${SUBJECT[$n]} delivered once, dkim=pass dmarc=pass ($line)"
    INKAN_RESULT[$n]="delivered, dkim=pass dmarc=pass$([[ $line == *unlabelled-8bit* ]] && echo ', 8-bit unlabelled' || true)"
  else
    fail "receiver: ${SUBJECT[$n]} delivered once, dkim=pass dmarc=pass" "$line"
    grep -h "${SUBJECT[$n]}\|reject\|milter" "$LOG/postfix-rx.log" 2>/dev/null | tail -n 6 | sed 's/^/     | /' || true
  fi
done
if grep -q 'rx-7to7' -r "$MAIL/inbox/new" && ! grep -q 'rx-8to7' -r "$MAIL/inbox/new" &&
  grep -q '5\.6\.3' "$LOG/inkan.log"; then
  pass "8BITMIME: 8-bit mail never reaches the 7-bit next hop (recipient failed 5.6.3, bounced), 7-bit mail does"
else
  fail "8BITMIME: 8-bit mail held back from the 7-bit next hop (5.6.3), 7-bit mail delivered" "logs $LOG/inkan.log, $LOG/postfix-rx.log"
  grep -h '5\.6\.3\|rx-8to7\|rx-7to7' "$LOG/inkan.log" | tail -n 4 | sed 's/^/     | /' || true
fi

# ---------- the reference: Postfix + OpenDKIM, as the guides set it up ----------
# myorigin = $mydomain, mynetworks trusted, OpenDKIM signing example.com with
# the same key, relaying to the same receiver. Its results are printed, never
# failed: they are what inkan is measured against.
cat >"$WORK/opendkim-sign.conf" <<EOF
Mode s
Socket inet:$P_DKIMS@127.0.0.1
Domain example.com
Selector rsa1
KeyFile $RSA_KEY
Canonicalization relaxed/relaxed
InternalHosts 127.0.0.0/8
Background no
Syslog no
PidFile $WORK/opendkim-sign.pid
EOF
opendkim -f -x "$WORK/opendkim-sign.conf" >"$LOG/opendkim-sign.log" 2>&1 &
PIDS+=($!)
new_postfix tx
TX=$PF
postconf -c "$TX/conf" -e myhostname=mail.example.com mydomain=example.com 'myorigin=$mydomain' mydestination= \
  mynetworks=127.0.0.0/8 "relayhost=[127.0.0.1]:$P_MX" local_transport=error:nolocal \
  milter_default_action=accept \
  "smtpd_milters=inet:127.0.0.1:$P_DKIMS" "non_smtpd_milters=inet:127.0.0.1:$P_DKIMS"
postconf -c "$TX/conf" -M "127.0.0.1:$P_REF/inet=127.0.0.1:$P_REF inet n - n - - smtpd"
declare -A REF
send_ref() {
  case $1 in
  thunderbird) # from mynetworks: no SASL daemon in this reference
    timeout 40 swaks --timeout 15 -s 127.0.0.1 -p "$P_REF" --helo '[127.0.0.1]' \
      --from alice@example.com --to "$TO" --data "@$INPUTS/ref-thunderbird.eml" >"$LOG/ref-$1.log" 2>&1 && grep -q 'queued as' "$LOG/ref-$1.log" ;;
  lan)
    timeout 40 $PY "$HERE/rawsmtp.py" 127.0.0.1 "$P_REF" 127.0.0.2 "HELO NPI3A2B1" scanner@localhost "$TO" "$INPUTS/ref-lan.eml" >"$LOG/ref-$1.log" 2>&1 ;;
  root)
    timeout 40 $PY "$HERE/rawsmtp.py" 127.0.0.1 "$P_REF" 127.0.0.1 "EHLO app.example.com" root "$TO" "$INPUTS/ref-root.eml" >"$LOG/ref-$1.log" 2>&1 ;;
  cron)
    unshare -u bash -c 'hostname web01 && exec "$@"' _ /usr/sbin/sendmail -C "$TX/conf" -FCronDaemon -i -odi -oem -oi -t -f root \
      <"$INPUTS/ref-cron.eml" >"$LOG/ref-$1.log" 2>&1 ;;
  php) # as root: Postfix's postdrop takes another config folder only from root
    unshare -u bash -c 'hostname web01 && exec "$@"' _ php -n -d "sendmail_path=/usr/sbin/sendmail -C $TX/conf -t -i" \
      -r "exit(mail(\"$TO\", \"Order confirmation ref-php\", \"Danke f\\u{fc}r Ihre Bestellung.\\n\") ? 0 : 1);" >"$LOG/ref-$1.log" 2>&1 ;;
  esac
}
# ref_outcome N: what became of the reference's message N
ref_outcome() {
  local line qid why
  if line=$($PY "$HERE/maildir.py" "$MAIL/inbox" mx.example.net "ref-${SUBJECT[$1]#rx-}"); then
    echo "delivered, dkim=pass dmarc=pass$([[ $line == *unlabelled-8bit* ]] && echo ', 8-bit unlabelled' || true)"
  elif [[ $line != *copies=0* ]]; then
    echo "${line#* }"
  else
    qid=$(grep -ohE 'queued as [0-9A-Za-z]+' "$LOG/ref-$1.log" | tail -n 1 | cut -d' ' -f3)
    [ -z "$qid" ] && qid=$(grep -h "ref-${SUBJECT[$1]#rx-}" "$LOG/postfix-tx.log" 2>/dev/null | grep -oE ' [0-9A-F]{6,}:' | head -n 1 | tr -d ' :')
    why=""
    [ -n "$qid" ] && why=$(grep -h "$qid" "$LOG/postfix-tx.log" 2>/dev/null | grep -E 'status=(bounced|deferred)|reject' | tail -n 1 |
      sed -E 's/.*(said: |status=)//' | cut -c1-100)
    echo "not delivered${why:+: $why}"
  fi
}
if wait_port "$P_DKIMS" 10 && start_postfix tx && wait_port "$P_REF" 15; then
  for n in "${NAMES[@]}"; do
    [ -f "$INPUTS/$n.eml" ] && sed 's/ rx-/ ref-/' "$INPUTS/$n.eml" >"$INPUTS/ref-$n.eml"
    if send_ref "$n"; then
      REF[$n]=accepted
    else
      REF[$n]="refused: $(grep -hE '^(<-|<~|<\*\*|<~\*) +[45]|sendmail:|postdrop:' "$LOG/ref-$n.log" | tail -n 1 | cut -c1-90 || true)"
    fi
  done
  REFSUBJ=()
  for n in "${NAMES[@]}"; do [ "${REF[$n]}" = accepted ] && REFSUBJ+=("ref-${SUBJECT[$n]#rx-}"); done
  wait_mail 20 "${REFSUBJ[@]}" || true
  for n in "${NAMES[@]}"; do
    [ "${REF[$n]}" = accepted ] && REF[$n]=$(ref_outcome "$n")
  done
else
  show "$LOG/postfix-tx.start"
  for n in "${NAMES[@]}"; do REF[$n]="not run (the reference stack did not start)"; done
fi
echo
printf '     %-12s %-33s %s\n' input inkan "Postfix + OpenDKIM (reference)"
for n in "${NAMES[@]}"; do
  printf '     %-12s %-33s %s\n' "$n" "${INKAN_RESULT[$n]:-failed}" "${REF[$n]}"
done
for n in "${NAMES[@]}"; do
  if [ -n "${INKAN_RESULT[$n]:-}" ] && [ "${REF[$n]}" != "${INKAN_RESULT[$n]}" ]; then
    echo "     inkan does better: ${WHAT[$n]}"
  fi
done

finish
