#!/usr/bin/env bash
# sendmail drop-in checks (issue 13): inkan's sendmail against Postfix's.
#
#   differential  the same command lines and messages go through Postfix's
#                 sendmail (a private Postfix 3.x, "postfix -c", relaying to a
#                 sink) and through `inkan sendmail` (a running inkan relaying
#                 to another sink); the exit codes, the envelopes, the header
#                 fields each adds or removes (Bcc), the From it adds and the
#                 "from userid N" of its Received must agree;
#   clients       PHP mail() (sendmail_path, -t -i) and Symfony Mailer's
#                 SendmailTransport (sendmail -bs, the default of Symfony and
#                 Laravel), from Debian's php-cli and php-symfony-mailer;
#   relay down    cron-like submissions while inkan is stopped go to the
#                 maildrop (exit 0) and arrive once inkan runs again;
#   identity      a non-root user gets "from userid 65534", may not use
#                 -f root@..., -config or -C (exit 77), and cannot read or
#                 delete what others left in the maildrop.
#
# Postfix's sendmail runs as root only: as another user it needs the private
# config listed in the system main.cf (alternate_config_directories), which
# this script does not touch. Needs root and the packages of
# .ci/install-deps.sh. Prints PASS/FAIL lines and "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
BASE=${SENDMAIL_CI_BASE:-/var/lib/inkan-sendmail-ci}
LIMIT=${SENDMAIL_CI_TIMEOUT:-150}
if [ -z "${SENDMAIL_CI_INNER:-}" ]; then
  SENDMAIL_CI_INNER=1 exec timeout -k 15 "$LIMIT" bash "$0" "$@"
fi

PASSED=0
FAILED=0
PIDS=()
POSTFIX_TOUCHED=0
INKAN_PID=""
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
chmod 755 "$WORK" # nobody runs the binary and reads the config from here
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
PFDIR=$WORK/postfix
stop_postfix() {
  [ "$POSTFIX_TOUCHED" = 1 ] || return 0
  postfix -c "$PFDIR/conf" stop >/dev/null 2>&1 || true
  local m
  m=$(head -n 1 "$PFDIR/queue/pid/master.pid" 2>/dev/null | tr -d ' ' || true)
  [ -n "$m" ] && stop_pid "$m"
  POSTFIX_TOUCHED=0
}
cleanup() {
  local rc=$?
  set +e
  [ -n "$INKAN_PID" ] && stop_pid "$INKAN_PID"
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  stop_postfix
  if [ "$rc" = 0 ] && [ "$FAILED" = 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$WORK"
    # No trace outside the work folders: the base folder goes with the last run.
    if ! compgen -G "$BASE/run.*" >/dev/null; then rm -f "$BASE/lock" && rmdir "$BASE" 2>/dev/null; fi
  else echo "work files kept in $WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
on_term() {
  trap '' TERM INT
  fail "run: finished within ${LIMIT}s" "interrupted or out of time"
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
NOBODY_UID=$(id -u nobody)
as_nobody() { setpriv --reuid="$NOBODY_UID" --regid="$(id -g nobody)" --clear-groups -- "$@"; }

# ---------- build, sinks ----------
mkdir -p "$WORK/bin"
INKAN=$WORK/bin/inkan
go build -o "$INKAN" ./cmd/inkan >"$LOG/build.log" 2>&1 || { show "$LOG/build.log" 30; fatal "build" "go build ./cmd/inkan"; }
read -r P_SMTPS P_SUB P_RELAY P_HTTP P_SINK_I P_SINK_P <<<"$(free_ports 6)"
SINK_I=$WORK/sink-inkan
SINK_P=$WORK/sink-postfix
$PY .ci/interop/sink.py 127.0.0.1 "$P_SINK_I" "$SINK_I" >"$LOG/sink-inkan.log" 2>&1 &
PIDS+=($!)
$PY .ci/interop/sink.py 127.0.0.1 "$P_SINK_P" "$SINK_P" >"$LOG/sink-postfix.log" 2>&1 &
PIDS+=($!)

# wait_subject SINK SUBJECT [SECONDS]: the sink has a message with SUBJECT
wait_subject() {
  local i
  for i in $(seq $((${3:-20} * 5))); do
    cut -f2 "$1/index.tsv" 2>/dev/null | grep -qxF -- "$2" && return 0
    sleep 0.2
  done
  return 1
}
has_subject() { cut -f2 "$1/index.tsv" 2>/dev/null | grep -qxF -- "$2"; }

# ---------- inkan ----------
CFG=$WORK/inkan.yaml
cat >"$CFG" <<EOF
hostname: relay.test.example
data_dir: $WORK/data
listen:
  smtps: "127.0.0.1:$P_SMTPS"
  submission: "127.0.0.1:$P_SUB"
  relay: "127.0.0.1:$P_RELAY"
  http: "127.0.0.1:$P_HTTP"
auth:
  trusted_networks: [127.0.0.0/8]
rewrite:
  origin_domain: example.org   # Postfix: myorigin
delivery:
  resolver: "127.0.0.1:9"
  smarthost:
    address: "[127.0.0.1]:$P_SINK_I"
    tls: none
queue:
  retry_min: 1s
  retry_max: 2s
EOF
chmod 644 "$CFG"
start_inkan() {
  "$INKAN" serve -config "$CFG" -quiet >>"$LOG/inkan.log" 2>&1 &
  INKAN_PID=$!
  local i
  for i in $(seq 100); do
    $PY -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "http://127.0.0.1:$P_HTTP/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$INKAN_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
stop_inkan() { stop_pid "$INKAN_PID"; INKAN_PID=""; }
start_inkan || { show "$LOG/inkan.log"; fatal "inkan serve" "did not become ready"; }
export INKAN_CONFIG=$CFG

# ---------- a private Postfix relaying to its sink ----------
postfix_start() {
  mkdir -p "$PFDIR/conf" "$PFDIR/queue" "$PFDIR/data" || return 1
  chmod 755 "$PFDIR" "$PFDIR/queue"
  chown postfix "$PFDIR/data" || return 1
  cp /etc/postfix/master.cf.proto "$PFDIR/conf/master.cf" 2>/dev/null || cp /usr/share/postfix/master.cf.dist "$PFDIR/conf/master.cf" || return 1
  : >"$PFDIR/conf/main.cf"
  postconf -c "$PFDIR/conf" -e compatibility_level=3.6 \
    queue_directory="$PFDIR/queue" data_directory="$PFDIR/data" \
    myhostname=relay.test.example myorigin=example.org mydestination= \
    inet_interfaces=loopback-only inet_protocols=ipv4 \
    alias_maps= alias_database= local_transport=error:nolocal \
    "relayhost=[127.0.0.1]:$P_SINK_P" maillog_file="$LOG/postfix.log" || return 1
  postconf -c "$PFDIR/conf" -F '*/*/chroot = n' || return 1
  postconf -c "$PFDIR/conf" -MX smtp/inet || return 1
  POSTFIX_TOUCHED=1
  postfix -c "$PFDIR/conf" start
}
postfix_start >"$LOG/postfix-start.log" 2>&1 || { show "$LOG/postfix-start.log"; fatal "postfix" "private instance did not start"; }
PFSENDMAIL=(/usr/sbin/sendmail -C "$PFDIR/conf")
note "inkan $INKAN (config $CFG), Postfix $(postconf -d -h mail_version) ($PFDIR)"

# ---------- the comparison of two delivered messages ----------
COMPARE=$WORK/compare.py
cat >"$COMPARE" <<'EOF'
"""compare.py SINK_A SINK_B SUBJECT UID: the message with SUBJECT that
Postfix (A) and inkan (B) delivered must agree on: the envelope, the set of
header field names (Received aside), no Bcc, From (address and name), the
To and Cc addresses, the body, and a Received with "from userid UID"."""
import email.parser, email.policy, email.utils, sys

def load(sink, subject):
    for line in open(sink + "/index.tsv", encoding="utf-8"):
        f, subj, frm, rcpts = line.rstrip("\n").split("\t")
        if subj == subject:
            raw = open(sink + "/" + f, "rb").read()
            msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
            return frm, sorted(rcpts.split(",")), msg
    sys.exit("no message %r in %s" % (subject, sink))

a_sink, b_sink, subject, uid = sys.argv[1:]
bad = []
(af, ar, am), (bf, br, bm) = load(a_sink, subject), load(b_sink, subject)
if (af, ar) != (bf, br):
    bad.append("envelope: postfix %s -> %s, inkan %s -> %s" % (af, ar, bf, br))
names = lambda m: sorted({k.lower() for k in m.keys()} - {"received"})
# Known and meant: inkan's header hygiene adds "To: undisclosed-recipients:;"
# to a message with neither To nor Cc; Postfix 3.x does so only with
# undisclosed_recipients_header set (empty by default since 2.8).
if "to" not in names(am) and "cc" not in names(am) and (bm.get("To") or "").strip() == "undisclosed-recipients:;":
    del bm["To"]
    print("KNOWN inkan adds To: undisclosed-recipients:; (Postfix: undisclosed_recipients_header, empty by default)")
if names(am) != names(bm):
    bad.append("header fields: postfix %s, inkan %s" % (names(am), names(bm)))
for who, m in (("postfix", am), ("inkan", bm)):
    if m.get_all("Bcc") or m.get_all("Resent-Bcc"):
        bad.append(who + " kept a Bcc field")
    if not any("from userid %s)" % uid in " ".join(r.split()) for r in m.get_all("Received", [])):
        bad.append(who + ": no Received with 'from userid %s'" % uid)
pa, pb = email.utils.parseaddr(am.get("From", "")), email.utils.parseaddr(bm.get("From", ""))
if (pa[0], pa[1].lower()) != (pb[0], pb[1].lower()):
    bad.append("From: postfix %r, inkan %r" % (pa, pb))
# Recipient fields: the same addresses (Postfix completes "To: root" with
# myorigin, inkan with rewrite.origin_domain).
addrs = lambda m, f: sorted(a.lower() for _, a in email.utils.getaddresses(m.get_all(f, [])))
for f in ("To", "Cc"):
    if addrs(am, f) != addrs(bm, f):
        bad.append("%s: postfix %s, inkan %s" % (f, addrs(am, f), addrs(bm, f)))
body = lambda m: m.get_payload(decode=False).replace("\r\n", "\n").rstrip("\n")
if body(am) != body(bm):
    bad.append("body: postfix %r, inkan %r" % (body(am)[:80], body(bm)[:80]))
print("envelope %s -> %s; fields %s; From %r" % (bf, ",".join(br), " ".join(names(bm)), pb))
for b in bad:
    print("DIFF " + b)
sys.exit(1 if bad else 0)
EOF

# differ NAME SUBJECT STDIN ARGS...: run both sendmails as root with the
# same arguments and input; the exit codes and the delivered messages must
# agree (compare.py).
differ() {
  local name=$1 subject=$2 input=$3 rp ri
  shift 3
  rp=0 ri=0
  printf '%b' "$input" | timeout 20 "${PFSENDMAIL[@]}" "$@" >"$LOG/$subject.postfix" 2>&1 || rp=$?
  printf '%b' "$input" | timeout 20 "$INKAN" sendmail "$@" >"$LOG/$subject.inkan" 2>&1 || ri=$?
  if [ "$rp" != 0 ] || [ "$ri" != 0 ]; then
    fail "same as Postfix: $name" "exit postfix $rp, inkan $ri"
    show "$LOG/$subject.postfix" 5
    show "$LOG/$subject.inkan" 5
    return
  fi
  if ! wait_subject "$SINK_P" "$subject" || ! wait_subject "$SINK_I" "$subject"; then
    fail "same as Postfix: $name" "not delivered by both"
    return
  fi
  if $PY "$COMPARE" "$SINK_P" "$SINK_I" "$subject" 0 >"$LOG/$subject.cmp" 2>&1; then
    pass "same as Postfix: $name"
    sed 's/^/     /' "$LOG/$subject.cmp"
  else
    fail "same as Postfix: $name" "see below"
    sed 's/^/     | /' "$LOG/$subject.cmp"
  fi
}

# ---------- 1. the differential ----------
differ "cron: -FCronDaemon -i -B8BITMIME -oem RCPT" sm-cron 'Subject: sm-cron\nTo: root\n\nfinished\n' \
  -FCronDaemon -i -B8BITMIME -oem ops@example.net
differ "PHP-style -t -i: recipients from To/Bcc, Bcc removed, a lone dot kept" sm-t-bcc \
  'To: a@example.net\nBcc: hidden@example.net\nSubject: sm-t-bcc\n\nbody\n.\nafter dot\n' -t -i -f www@example.com
differ "recipients as arguments: Bcc removed all the same" sm-args-bcc \
  'Subject: sm-args-bcc\nBcc: hidden@example.net\n\nbody\n' ops@example.net
differ "no From: added with -F and -f" sm-fullname 'Subject: sm-fullname\n\nx\n' -F "Backup Job" -f backup@example.com ops@example.net
differ "From present: kept as written" sm-from 'From: App <app@example.com>\nSubject: sm-from\n\nx\n' -f app@example.com ops@example.net
differ "without -i a lone dot ends the message" sm-dot 'Subject: sm-dot\n\nline\n.\nnot sent\n' ops@example.net
differ "-t adds the header's recipients to the arguments' (To, Cc)" sm-t-plus \
  'To: a@example.net\nCc: ops@example.net\nSubject: sm-t-plus\n\nx\n' -t hidden@example.net
differ "DSN options -N -R -V accepted" sm-dsn 'Subject: sm-dsn\n\nx\n' -N success,failure -R hdrs -V env-123 ops@example.net

# exit codes where nothing is sent
codes_ok=1
for spec in "no recipients|" "-t without recipient fields|-t" "unknown option|-k ops@example.net" \
  "unsupported mode|-bz" "missing value|-F" "newaliases|-bi" "queue interval|-q30m" "mailq|-bp" "unsupported -X|-X /dev/null ops@example.net"; do
  what=${spec%%|*}
  read -r -a args <<<"${spec#*|}"
  rp=0 ri=0
  printf 'Subject: sm-codes\n\nx\n' | timeout 20 "${PFSENDMAIL[@]}" "${args[@]}" >/dev/null 2>&1 || rp=$?
  printf 'Subject: sm-codes\n\nx\n' | timeout 20 "$INKAN" sendmail "${args[@]}" >"$LOG/codes.inkan" 2>&1 || ri=$?
  if [ "$rp" = "$ri" ]; then note "exit $rp for $what (sendmail ${args[*]})"; else
    codes_ok=0
    note "DIFF exit for $what (sendmail ${args[*]}): postfix $rp, inkan $ri"
    show "$LOG/codes.inkan" 3
  fi
done
if [ "$codes_ok" = 1 ]; then pass "same as Postfix: exit codes of 9 refusals and non-sending modes"; else fail "same as Postfix: exit codes" "see DIFF above"; fi

# ---------- 2. PHP mail() and Symfony Mailer (-bs) ----------
php_mail() { # SENDMAIL_PATH SUBJECT
  php -d sendmail_path="$1" -r '
    $ok = mail("a@example.net", $argv[1], "body\n.\nafter dot\n", "From: www@example.com\r\nBcc: hidden@example.net");
    exit($ok ? 0 : 1);' "$2"
}
if php_mail "/usr/sbin/sendmail -C $PFDIR/conf -t -i" sm-php-mail >"$LOG/php-postfix.log" 2>&1 &&
  php_mail "$INKAN sendmail -t -i" sm-php-mail >"$LOG/php-inkan.log" 2>&1 &&
  wait_subject "$SINK_P" sm-php-mail && wait_subject "$SINK_I" sm-php-mail &&
  $PY "$COMPARE" "$SINK_P" "$SINK_I" sm-php-mail 0 >"$LOG/php.cmp" 2>&1; then
  pass "PHP mail() with sendmail_path: true, the same message as through Postfix (Bcc removed)"
  sed 's/^/     /' "$LOG/php.cmp"
else
  fail "PHP mail() with sendmail_path" "see below"
  show "$LOG/php-inkan.log" 5
  show "$LOG/php.cmp" 10
fi

SYMFONY=$WORK/symfony.php
cat >"$SYMFONY" <<'EOF'
<?php
// Symfony Mailer's SendmailTransport speaks SMTP to "COMMAND -bs".
require '/usr/share/php/Symfony/Component/Mailer/autoload.php';
use Symfony\Component\Mailer\Mailer;
use Symfony\Component\Mailer\Transport\SendmailTransport;
use Symfony\Component\Mime\Email;
[, $cmd, $from, $to, $bcc, $subject] = $argv;
(new Mailer(new SendmailTransport($cmd)))->send(
    (new Email())->from($from)->to($to)->bcc($bcc)->subject($subject)->text("sent by Symfony Mailer over sendmail -bs\n"));
EOF
chmod 644 "$SYMFONY"
if php "$SYMFONY" "/usr/sbin/sendmail -C $PFDIR/conf -bs" root@relay.test.example ops@example.net hidden@example.net sm-symfony >"$LOG/symfony-postfix.log" 2>&1 &&
  php "$SYMFONY" "$INKAN sendmail -bs" root@relay.test.example ops@example.net hidden@example.net sm-symfony >"$LOG/symfony-inkan.log" 2>&1 &&
  wait_subject "$SINK_P" sm-symfony && wait_subject "$SINK_I" sm-symfony &&
  $PY "$COMPARE" "$SINK_P" "$SINK_I" sm-symfony 0 >"$LOG/symfony.cmp" 2>&1; then
  pass "Symfony Mailer (SendmailTransport, -bs): sent, the same message as through Postfix"
  sed 's/^/     /' "$LOG/symfony.cmp"
else
  fail "Symfony Mailer (SendmailTransport, -bs)" "see below"
  show "$LOG/symfony-inkan.log" 8
  show "$LOG/symfony.cmp" 10
fi
if as_nobody env INKAN_CONFIG="$CFG" php "$SYMFONY" "$INKAN sendmail -bs" nobody@relay.test.example ops@example.net hidden@example.net sm-symfony-nobody >"$LOG/symfony-nobody.log" 2>&1 &&
  wait_subject "$SINK_I" sm-symfony-nobody &&
  grep -l "from userid $NOBODY_UID)" "$SINK_I"/*.eml >/dev/null; then
  pass "Symfony Mailer -bs as nobody: sent, Received says from userid $NOBODY_UID"
else
  fail "Symfony Mailer -bs as nobody" "see below"
  show "$LOG/symfony-nobody.log" 8
fi

# ---------- 3. a non-root user: identity and refusals ----------
nb_rc() { local rc=0; printf 'Subject: %s\n\nx\n' "$1" | as_nobody env INKAN_CONFIG="$CFG" "$INKAN" sendmail "${@:2}" >"$LOG/$1.log" 2>&1 || rc=$?; echo "$rc"; }
printf 'relay: "127.0.0.1:9"\n' >"$WORK/evil.yaml"
chmod 644 "$WORK/evil.yaml"
r1=$(nb_rc sm-nb-root -f root@relay.test.example ops@example.net)
r2=$(nb_rc sm-nb-config -config "$WORK/evil.yaml" ops@example.net)
r3=$(nb_rc sm-nb-C -C "$WORK/evil.yaml" ops@example.net)
r4=$(nb_rc sm-nb-own ops@example.net)
if [ "$r1$r2$r3$r4" = "7777770" ] && grep -q "may not send as <root@relay.test.example>" "$LOG/sm-nb-root.log" &&
  wait_subject "$SINK_I" sm-nb-own && ! has_subject "$SINK_I" sm-nb-root; then
  pass "nobody: -f root@ exit 77, -config exit 77, -C exit 77; its own address is sent"
  note "$(head -n 1 "$LOG/sm-nb-root.log")"
else
  fail "nobody: -f root@ / -config / -C refused with 77, own address sent" "exit codes $r1 $r2 $r3 $r4"
  show "$LOG/sm-nb-root.log" 3
fi

# ---------- 4. cron while the relay is down ----------
stop_inkan
rd1=$(nb_rc sm-down-nobody -FCronDaemon -i ops@example.net)
rd2=0
printf 'Subject: sm-down-root\nBcc: hidden@example.net\n\njob done\n' | "$INKAN" sendmail -i ops@example.net >"$LOG/sm-down-root.log" 2>&1 || rd2=$?
files=$(find "$WORK/data/maildrop" -maxdepth 1 -type f | wc -l)
peek=0
as_nobody ls "$WORK/data/maildrop" >/dev/null 2>&1 && peek=1
for f in "$WORK"/data/maildrop/*; do
  [ "$(stat -c %u "$f")" = 0 ] || continue
  as_nobody cat "$f" >/dev/null 2>&1 && peek=1
  as_nobody rm -f "$f" >/dev/null 2>&1 || true
done
files_after=$(find "$WORK/data/maildrop" -maxdepth 1 -type f | wc -l)
if [ "$rd1$rd2" = 00 ] && [ "$files" = 2 ] && [ "$peek" = 0 ] && [ "$files_after" = 2 ]; then
  pass "relay stopped: nobody and root exit 0, 2 files in the maildrop ($(stat -c %A "$WORK/data/maildrop")), nobody cannot list, read or delete root's"
else
  fail "relay stopped: sendmail exits 0 into the maildrop" "exit $rd1 $rd2, files $files -> $files_after, peek $peek"
  show "$LOG/sm-down-nobody.log" 3
fi
start_inkan || { show "$LOG/inkan.log"; fatal "inkan serve (restart)" "did not become ready"; }
if wait_subject "$SINK_I" sm-down-nobody 30 && wait_subject "$SINK_I" sm-down-root 30; then
  ok=1
  for s in "sm-down-nobody:$NOBODY_UID" "sm-down-root:0"; do
    f=$(awk -F'\t' -v s="${s%%:*}" '$2 == s {print $1}' "$SINK_I/index.tsv" | head -n 1)
    grep -q "from userid ${s##*:})" "$SINK_I/$f" || ok=0
    grep -qi '^bcc:' "$SINK_I/$f" && ok=0
  done
  if [ "$ok" = 1 ] && [ -z "$(find "$WORK/data/maildrop" -maxdepth 1 -type f)" ]; then
    pass "relay restarted: both messages arrived, as uid $NOBODY_UID and 0; the maildrop is empty"
  else
    fail "relay restarted: messages from the maildrop" "userid or Bcc wrong, or files left"
  fi
else
  fail "relay restarted: the maildrop's messages arrive" "not at the sink"
  grep -i maildrop "$LOG/inkan.log" | tail -n 5 | sed 's/^/     | /'
fi

finish
