#!/usr/bin/env bash
# OAuth2 smarthost interop: the built inkan against an OAuth2 provider
# stand-in written in Python from the specifications (.ci/interop/oauth2_relay.py:
# a token endpoint on loopback and an aiosmtpd relay that takes only XOAUTH2
# and OAUTHBEARER with a token it issued), mail submitted with swaks.
#
# Checks: XOAUTH2 and OAUTHBEARER logins with a token from the refresh-token
# flow; the first relay of a failover list down, the second used; access
# tokens revoked by the provider (refused, renewed once, delivered); a revoked
# refresh token (the mail waits, `inkan queue show` gives the fix, nothing is
# lost) and, after a new refresh token, `inkan queue retry` delivers it; no
# token in inkan's log.
#
# Prints one PASS/FAIL line per check and "N passed, N failed"; exits 1 on any
# failure. Needs Go, python3-aiosmtpd, swaks and openssl (.ci/install-deps.sh);
# no root. Everything listens on 127.0.0.1; only processes started here are
# stopped, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
LIMIT=${INTEROP_TIMEOUT:-120}
if [ -z "${OAUTH2_INTEROP_INNER:-}" ]; then
  OAUTH2_INTEROP_INNER=1 exec timeout -k 10 "$LIMIT" bash "$0" "$@"
fi

PASSED=0
FAILED=0
PIDS=()
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1${2:+ ($2)}"; FAILED=$((FAILED + 1)); }
work=$(mktemp -d /tmp/inkan-oauth2-interop.XXXXXX)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$FAILED" = 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "     work files kept in $work"; fi
}
trap cleanup EXIT

# waitfor SECONDS CMD...: until CMD succeeds (the limit only catches hangs).
waitfor() {
  local n=$(($1 * 10))
  shift
  while ! "$@" >/dev/null 2>&1; do
    n=$((n - 1))
    [ "$n" -gt 0 ] || return 1
    sleep 0.1
  done
}

go build -o "$work/inkan" ./cmd/inkan
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=relay.test \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/relay.key" -out "$work/relay.crt" 2>/dev/null
pin=$(openssl x509 -noout -fingerprint -sha256 -in "$work/relay.crt" | cut -d= -f2)

read -r SMTP TOKEN DEAD RELAY HTTP <<<"$($PY .ci/free-ports.py 5)"
mkdir -p "$work/provider" "$work/data"
chmod 700 "$work/data"
echo rt-first >"$work/provider/refresh-valid"
printf 'rt-first\n' >"$work/refresh"
chmod 600 "$work/refresh"
$PY "$ROOT/.ci/interop/oauth2_relay.py" 127.0.0.1 "$SMTP" "$TOKEN" "$work/provider" "$work/relay.crt" "$work/relay.key" \
  >"$work/provider.log" 2>&1 &
PIDS+=($!)

cat >"$work/inkan.yaml" <<EOF
hostname: relay.test.example
data_dir: $work/data
listen: {smtps: "", submission: "", relay: "127.0.0.1:$RELAY", http: "127.0.0.1:$HTTP"}
auth:
  trusted_networks: [127.0.0.0/8]
delivery:
  resolver: "127.0.0.1:9"
  smarthost:
    address: "[127.0.0.1]:$DEAD, [127.0.0.1]:$SMTP"
    tls: verify
    tls_fingerprint: "$pin"
    username: relay@example.com
    oauth2:
      token_url: http://127.0.0.1:$TOKEN/token
      client_id: client-1
      refresh_token_file: $work/refresh
      mechanism: xoauth2
  sender_relay:
    "@bearer.example":
      address: "[127.0.0.1]:$SMTP"
      tls: verify
      tls_fingerprint: "$pin"
      username: bearer@example.com
      oauth2:
        token_url: http://127.0.0.1:$TOKEN/token
        client_id: client-1
        refresh_token_file: $work/refresh
        mechanism: oauthbearer
queue:
  retry_min: 1s
  retry_max: 2s
EOF
export INKAN_CONFIG=$work/inkan.yaml
"$work/inkan" serve -quiet >"$work/inkan.log" 2>&1 &
PIDS+=($!)
waitfor 15 "$work/inkan" health || { fail "inkan started" "log $work/inkan.log"; tail "$work/inkan.log"; exit 1; }
waitfor 15 $PY -c "import socket; socket.create_connection(('127.0.0.1', $SMTP))"

send() { swaks --server "127.0.0.1:$RELAY" --from "$1" --to "$2" --h-Subject "$3" 2>&1; }
queued() { sed -n 's/.*queued as \([A-Za-z0-9]*\).*/\1/p' | tail -1; }
received() { [ "$(ls "$work/provider"/*.eml 2>/dev/null | wc -l)" -ge "$1" ]; }

# 1. XOAUTH2 through the failover list; OAUTHBEARER for a sender relay.
send a@example.com bob@elsewhere.example "xoauth2" >/dev/null
waitfor 20 received 1 && grep -q '^XOAUTH2 relay@example.com ok' "$work/provider/auth.log" &&
  pass "XOAUTH2 login with a refresh-token access token (exact wire format)" || fail "XOAUTH2 login" "$(cat "$work/provider/auth.log" 2>/dev/null)"
grep -q 'relay address failed; trying the next one' "$work/inkan.log" &&
  pass "first relay of the failover list down, the second used" || fail "failover" "log $work/inkan.log"
send b@bearer.example bob@elsewhere.example "oauthbearer" >/dev/null
waitfor 20 received 2 && grep -q '^OAUTHBEARER bearer@example.com ok' "$work/provider/auth.log" &&
  pass "OAUTHBEARER login (RFC 7628)" || fail "OAUTHBEARER login" "$(cat "$work/provider/auth.log" 2>/dev/null)"

# 2. The provider revokes the access tokens: refused once, renewed, delivered.
touch "$work/provider/revoke-access"
send a@example.com carol@elsewhere.example "after revocation" >/dev/null
waitfor 20 received 3 && grep -q '^XOAUTH2 relay@example.com refused' "$work/provider/auth.log" &&
  pass "revoked access token refused, renewed and delivered" || fail "access token renewal" "$(cat "$work/provider/auth.log")"

# 3. The refresh token is revoked: the mail waits with the fix, nothing lost.
: >"$work/provider/refresh-valid"
touch "$work/provider/revoke-access"
id=$(send a@example.com dave@elsewhere.example "revoked refresh token" | queued)
if waitfor 20 sh -c "'$work/inkan' queue show $id | grep -q 'inkan oauth2 login'"; then
  pass "revoked refresh token: queue show gives the reason and the fix"
else
  fail "revoked refresh token reason" "$("$work/inkan" queue show "$id" 2>&1 | tail -3)"
fi
echo rt-second >"$work/provider/refresh-valid"
printf 'rt-second\n' >"$work/refresh"
"$work/inkan" queue retry "$id" >/dev/null
waitfor 20 received 4 && pass "after a new refresh token, queue retry delivered the waiting message" || fail "delivery after a new refresh token"

if grep -Eq 'at-[0-9a-f]{32}|rt-first|rt-second' "$work/inkan.log"; then fail "no token in inkan's log"; else pass "no token in inkan's log"; fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
