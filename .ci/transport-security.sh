#!/usr/bin/env bash
# Transport security with real parts, on loopback only, bounded (~2 min):
#
#  1. DNSSEC: nsd serves three zones, sec.test and bogus.test signed with
#     ldns-signzone (one TLSA record of sec.test changed after signing), and
#     insecure.test unsigned; unbound validates them with the test trust
#     anchors (bogus.test's anchor names another key). TestLiveDNSSEC then
#     delivers through unbound to go-smtp sinks: TLSA match -> delivered,
#     mismatch -> deferred, bogus TLSA or MX -> deferred, unsigned zone ->
#     opportunistic.
#  2. The built binary delivers through the same resolver to Python
#     (aiosmtpd) MX sinks: mail to a DANE match arrives; mail to a mismatch
#     waits, and `inkan queue show` names the DANE policy and the reason.
#     MTA-STS the same way: a Python HTTPS server on 127.0.0.8:443 serves
#     enforce policies (its certificate from a test CA that inkan trusts
#     through SSL_CERT_FILE); the MX with a CA-signed certificate gets the
#     mail, the one with a self-signed certificate does not.
#  3. TLS-RPT: the reports the Go tests build are checked against
#     relay/deliver/testdata/tlsrpt.schema.json (RFC 8460 section 4.4) with
#     python3-jsonschema; a broken copy must fail.
#  4. ACME against Pebble (Debian's pebble package): HTTP-01 issuance (and
#     the RSA certificate a client without ECDSA gets),
#     renewal served without a restart (Pebble issues 60 s certificates),
#     TLS-ALPN-01 issuance, the cached certificate served after a restart
#     with the CA gone, and the self-signed fallback with a clear error
#     when the CA cannot be reached.
#
# Every process it starts is stopped by PID at exit. Needs the packages of
# .ci/install-deps.sh (unbound nsd ldnsutils pebble python3-jsonschema
# python3-aiosmtpd openssl swaks).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3 # Debian's python: python3-jsonschema and python3-aiosmtpd live there
start=$(date +%s)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\n--- %s (t+%ss)\n' "$*" "$(($(date +%s) - start))"; }
fail() {
	echo "FAIL: $*" >&2
	for f in "$work"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 40 "$f"; }; done >&2
	exit 1
}
# freeport prints a TCP (and UDP) port free on 127.0.0.1.
freeport() {
	"$PY" -c 'import socket
for _ in range(50):
    t=socket.socket(); t.bind(("127.0.0.1",0)); p=t.getsockname()[1]
    u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
    try: u.bind(("127.0.0.1",p))
    except OSError: t.close(); continue
    print(p); break'
}
# waitfor FILE PATTERN SECONDS: until a line matches (grep -E).
waitfor() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
spki_sha256() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }

go build -o "$work/inkan" ./cmd/inkan
say "certificates and zones"
port=$(freeport)      # the MX port: in the TLSA names, the sinks listen on it
nsd_port=$(freeport)
ub_port=$(freeport)
mkdir -p "$work/certs" "$work/zones"
for name in good other; do
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=mx-$name.sec.test" -addext "subjectAltName=DNS:mx-$name.sec.test" \
		-keyout "$work/certs/$name.key" -out "$work/certs/$name.crt" 2>/dev/null
done
# MTA-STS: a test CA (given to inkan as SSL_CERT_FILE, Go's system roots)
# signs the policy host's certificate and mx.sts's; mx.stsbad shows the
# self-signed "good" certificate, which MTA-STS enforce must refuse.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=inkan test CA" \
	-keyout "$work/certs/ca.key" -out "$work/certs/ca.crt" 2>/dev/null
ca_sign() { # NAME SAN...: NAME.crt/.key signed by the test CA
	local n=$1 san
	shift
	san=$(printf 'DNS:%s,' "$@")
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
		-keyout "$work/certs/$n.key" -out "$work/certs/$n.csr" 2>/dev/null
	printf 'subjectAltName=%s\n' "${san%,}" >"$work/certs/$n.ext"
	openssl x509 -req -in "$work/certs/$n.csr" -CA "$work/certs/ca.crt" -CAkey "$work/certs/ca.key" \
		-CAcreateserial -days 2 -extfile "$work/certs/$n.ext" -out "$work/certs/$n.crt" 2>/dev/null
}
ca_sign sts-mx mx.sts.insecure.test
ca_sign sts-web mta-sts.sts.insecure.test mta-sts.stsbad.insecure.test
good=$(spki_sha256 "$work/certs/good.crt")
other=$(spki_sha256 "$work/certs/other.crt")
soa() { printf '$ORIGIN %s.\n$TTL 300\n@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300\n@ IN NS ns.%s.\nns IN A 127.0.0.1\n' "$1" "$1" "$1" "$1"; }
{
	soa sec.test
	cat <<EOF
good IN MX 10 mx-good.sec.test.
mx-good IN A 127.0.0.2
_$port._tcp.mx-good IN TLSA 3 1 1 $good
bad IN MX 10 mx-bad.sec.test.
mx-bad IN A 127.0.0.3
_$port._tcp.mx-bad IN TLSA 3 1 1 $other
tamper IN MX 10 mx-tamper.sec.test.
mx-tamper IN A 127.0.0.4
_$port._tcp.mx-tamper IN TLSA 3 1 1 $good
relay IN A 127.0.0.1
mail IN A 127.0.0.1
alpn IN A 127.0.0.1
EOF
} >"$work/zones/sec.test"
{
	soa bogus.test
	printf '@ IN MX 10 mx.bogus.test.\nmx IN A 127.0.0.5\n'
} >"$work/zones/bogus.test"
{
	soa insecure.test
	printf '@ IN MX 10 mx.insecure.test.\nmx IN A 127.0.0.6\n_%s._tcp.mx IN TLSA 3 1 1 %s\n' "$port" "$other"
	cat <<EOF
sts IN MX 10 mx.sts.insecure.test.
mx.sts IN A 127.0.0.7
_mta-sts.sts IN TXT "v=STSv1; id=20261206"
mta-sts.sts IN A 127.0.0.8
stsbad IN MX 10 mx.stsbad.insecure.test.
mx.stsbad IN A 127.0.0.9
_mta-sts.stsbad IN TXT "v=STSv1; id=1"
mta-sts.stsbad IN A 127.0.0.8
EOF
} >"$work/zones/insecure.test"
(
	cd "$work/zones"
	for z in sec.test bogus.test; do
		ksk=$(ldns-keygen -a ECDSAP256SHA256 -k "$z")
		zsk=$(ldns-keygen -a ECDSAP256SHA256 "$z")
		ldns-signzone -f "$z.signed" "$z" "$ksk" "$zsk"
		cp "$ksk.key" "$z.anchor"
	done
	# bogus.test: the trust anchor names a key that signed nothing.
	wrong=$(ldns-keygen -a ECDSAP256SHA256 -k bogus.test)
	cp "$wrong.key" bogus.test.anchor
	# mx-tamper: its TLSA data changed after signing, so its RRSIG fails.
	sed -i "/mx-tamper.*TLSA/{/RRSIG/!s/$good/$other/}" sec.test.signed
	grep -q "mx-tamper.*TLSA.*$other" sec.test.signed || exit 1
	cp insecure.test insecure.test.signed
)
cat >"$work/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1@$nsd_port
  username: ""
  chroot: ""
  zonesdir: "$work/zones"
  pidfile: "$work/nsd.pid"
  logfile: "$work/nsd.log"
  xfrdfile: "$work/xfrd.state"
  zonelistfile: "$work/zone.list"
  database: ""
  server-count: 1
  verbosity: 1
remote-control:
  control-enable: no
EOF
for z in sec.test bogus.test insecure.test; do
	printf 'zone:\n  name: %s\n  zonefile: %s.signed\n' "$z" "$z" >>"$work/nsd.conf"
done
cat >"$work/unbound.conf" <<EOF
server:
  interface: 127.0.0.1
  port: $ub_port
  do-ip6: no
  do-not-query-localhost: no
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: "$work/unbound.pid"
  use-syslog: no
  logfile: "$work/unbound.log"
  verbosity: 1
  val-log-level: 2
  module-config: "validator iterator"
  harden-dnssec-stripped: yes
  qname-minimisation: no
  access-control: 127.0.0.0/8 allow
  local-zone: "test." nodefault
  trust-anchor-file: "$work/zones/sec.test.anchor"
  trust-anchor-file: "$work/zones/bogus.test.anchor"
remote-control:
  control-enable: no
EOF
for z in sec.test bogus.test insecure.test; do
	printf 'stub-zone:\n  name: "%s"\n  stub-addr: 127.0.0.1@%s\n' "$z" "$nsd_port" >>"$work/unbound.conf"
done
nsd-checkconf "$work/nsd.conf" || fail "nsd config"
unbound-checkconf "$work/unbound.conf" >/dev/null || fail "unbound config"
nsd -d -c "$work/nsd.conf" >"$work/nsd.out.log" 2>&1 &
pids+=($!)
unbound -d -c "$work/unbound.conf" >"$work/unbound.out.log" 2>&1 &
pids+=($!)
resolver="127.0.0.1:$ub_port"
dig() { "$PY" - "$@" <<'EOF'
import socket, struct, sys
# a minimal query with the AD bit set; prints rcode and AD
name, qtype, server = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host, port = server.rsplit(":", 1)
q = struct.pack(">HHHHHH", 4242, 0x0120, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in name.strip(".").split(".")) + b"\0" + struct.pack(">HH", qtype, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
for _ in range(30):
    try:
        s.sendto(q, (host, int(port))); r = s.recv(4096); break
    except OSError:
        import time; time.sleep(0.2)
else:
    print("noanswer"); sys.exit()
flags = struct.unpack(">H", r[2:4])[0]
print("rcode=%d ad=%d" % (flags & 0xF, (flags >> 5) & 1))
EOF
}
say "unbound validates: sec.test secure, tamper and bogus.test SERVFAIL, insecure.test insecure"
[ "$(dig good.sec.test 15 "$resolver")" = "rcode=0 ad=1" ] || fail "good.sec.test MX not validated: $(dig good.sec.test 15 "$resolver")"
[ "$(dig "_$port._tcp.mx-tamper.sec.test" 52 "$resolver")" = "rcode=2 ad=0" ] || fail "tampered TLSA not bogus"
[ "$(dig bogus.test 15 "$resolver")" = "rcode=2 ad=0" ] || fail "bogus.test not bogus"
[ "$(dig insecure.test 15 "$resolver")" = "rcode=0 ad=0" ] || fail "insecure.test not insecure"

say "DANE through unbound: TestLiveDNSSEC"
INKAN_LIVE_RESOLVER=$resolver INKAN_LIVE_PORT=$port INKAN_LIVE_CERTS=$work/certs \
	go test -count=1 -run '^TestLiveDNSSEC$' -v ./relay/deliver >"$work/live.log" 2>&1 || fail "TestLiveDNSSEC"
grep -q -- "--- PASS: TestLiveDNSSEC" "$work/live.log" || fail "TestLiveDNSSEC did not run"

say "the binary: DANE match delivered, mismatch waits and queue show says why; the same for MTA-STS enforce"
cat >"$work/sink.py" <<'EOF'
import asyncio, ssl, sys, os
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
ip, port, cert, key, out = sys.argv[1:6]
class H:
    async def handle_DATA(self, server, session, envelope):
        with open(out, "ab") as f:
            f.write(b"TLS=%d %s\n" % (session.ssl is not None, envelope.rcpt_tos[0].encode()))
        return "250 2.0.0 ok"
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH); ctx.load_cert_chain(cert, key)
class C(Controller):
    def factory(self): return SMTP(self.handler, tls_context=ctx, require_starttls=False, hostname="sink")
c = C(H(), hostname=ip, port=int(port)); c.start()
print("ready", flush=True)
try:
    asyncio.get_event_loop().run_forever()
except KeyboardInterrupt:
    pass
EOF
for sink in 127.0.0.2:good 127.0.0.3:good 127.0.0.7:sts-mx 127.0.0.9:good; do
	ip=${sink%:*} cert=${sink#*:}
	"$PY" "$work/sink.py" "$ip" "$port" "$work/certs/$cert.crt" "$work/certs/$cert.key" "$work/sink-$ip.out" >"$work/sink-$ip.log" 2>&1 &
	pids+=($!)
	waitfor "$work/sink-$ip.log" ready 10 || fail "sink $ip did not start"
done
# The MTA-STS policy host: HTTPS on 127.0.0.8:443 (only port 443 is asked),
# one enforce policy per domain by Host header.
cat >"$work/sts.py" <<'EOF'
import http.server, ssl, sys
cert, key = sys.argv[1:3]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = self.headers.get("Host", "").split(":")[0]
        dom = host.removeprefix("mta-sts.")
        if self.path != "/.well-known/mta-sts.txt" or dom not in ("sts.insecure.test", "stsbad.insecure.test"):
            self.send_error(404); return
        body = ("version: STSv1\r\nmode: enforce\r\nmx: mx.%s\r\nmax_age: 86400\r\n" % dom).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = http.server.HTTPServer(("127.0.0.8", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
EOF
"$PY" "$work/sts.py" "$work/certs/sts-web.crt" "$work/certs/sts-web.key" >"$work/sts.log" 2>&1 &
pids+=($!)
waitfor "$work/sts.log" ready 10 || fail "MTA-STS policy server did not start"
relay_port=$(freeport)
mkdir -p "$work/d"
cat >"$work/d.yaml" <<EOF
hostname: relay.sec.test
data_dir: $work/d/data
listen: {smtps: "", submission: "", relay: "127.0.0.1:$relay_port", http: "", local: ""}
queue: {maildrop: "", retry_min: 1h, retry_max: 2h}
delivery: {resolver: "$resolver", mx_port: $port}
EOF
SSL_CERT_FILE=$work/certs/ca.crt "$work/inkan" serve -quiet -config "$work/d.yaml" >"$work/d.log" 2>&1 &
pids+=($!)
waitfor "$work/d.log" "inkan started" 10 || fail "inkan (delivery) did not start"
send() { swaks --server "127.0.0.1:$relay_port" --from a@relay.sec.test --to "$1" --h-Subject "dane test" 2>&1 | sed -n 's/.*queued as \([A-Z0-9]*\).*/\1/p' | tail -1; }
# policy_case POLICY GOOD_RCPT GOOD_SINK BAD_RCPT BAD_SINK SHOWN WHY: mail to
# GOOD_RCPT arrives over TLS at GOOD_SINK; mail to BAD_RCPT is deferred, never
# reaches BAD_SINK, and queue show names the policy (SHOWN) and the reason.
policy_case() {
	local good_id bad_id show
	good_id=$(send "$2")
	bad_id=$(send "$4")
	[ -n "$good_id" ] && [ -n "$bad_id" ] || fail "$1: swaks did not get queue IDs"
	waitfor "$work/sink-$3.out" "TLS=1 $2" 20 || fail "$1: mail to $2 not delivered over TLS"
	waitfor "$work/d.log" "queue_id=$bad_id.*status=deferred" 20 || fail "$1: mail to $4 not deferred"
	show=$("$work/inkan" queue -config "$work/d.yaml" show "$bad_id")
	echo "$show" | grep -qF "tls policy: $6" || fail "$1: queue show names no policy: $show"
	echo "$show" | grep -qF "$7" || fail "$1: queue show says not why: $show"
	[ ! -s "$work/sink-$5.out" ] || fail "$1: the refused MX got mail"
	grep -qF "tls_policy=\"$1" "$work/d.log" || fail "$1: the delivery log line names no policy"
}
policy_case DANE bob@good.sec.test 127.0.0.2 bob@bad.sec.test 127.0.0.3 \
	"DANE (1 usable of 1 TLSA records at _$port._tcp.mx-bad.sec.test)" "no TLSA record matches the certificate"
policy_case MTA-STS bob@sts.insecure.test 127.0.0.7 bob@stsbad.insecure.test 127.0.0.9 \
	"MTA-STS policy of stsbad.insecure.test (enforce, id 1)" "the certificate of mx.stsbad.insecure.test is not valid"

say "TLS-RPT reports against the RFC 8460 schema"
mkdir -p "$work/reports"
INKAN_TLSRPT_SAMPLES=$work/reports go test -count=1 -run 'TLSReport|MTASTS' ./relay/deliver >"$work/rpt.log" 2>&1 || fail "report tests"
"$PY" - "$work/reports" relay/deliver/testdata/tlsrpt.schema.json <<'EOF' || fail "schema check"
import glob, json, sys, copy, jsonschema
schema = json.load(open(sys.argv[2]))
jsonschema.Draft7Validator.check_schema(schema)
v = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
files = sorted(glob.glob(sys.argv[1] + "/*.json"))
assert len(files) >= 5, "too few reports: %d" % len(files)
kinds = set()
for f in files:
    doc = json.load(open(f))
    errs = [e.message for e in v.iter_errors(doc)]
    assert not errs, (f, errs)
    for p in doc["policies"]:
        kinds.add(p["policy"]["policy-type"])
        for d in p.get("failure-details", []):
            kinds.add(d["result-type"])
    bad = copy.deepcopy(doc); bad["policies"][0]["policy"]["policy-type"] = "bogus"
    assert list(v.iter_errors(bad)), "the schema accepts a bad policy-type"
print(len(files), "reports valid; seen:", ", ".join(sorted(kinds)))
EOF

say "ACME against Pebble"
mkdir -p "$work/pebble"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=pebble" \
	-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$work/pebble/key.pem" -out "$work/pebble/cert.pem" 2>/dev/null
cat >"$work/pebble/config.json" <<EOF
{"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
  "certificate": "$work/pebble/cert.pem", "privateKey": "$work/pebble/key.pem",
  "httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false,
  "certificateValidityPeriod": 60}}
EOF
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
	pebble -config "$work/pebble/config.json" -dnsserver "$resolver" >"$work/pebble.log" 2>&1 &
pebble_pid=$!
pids+=($pebble_pid)
waitfor "$work/pebble.log" "Listening on: 127.0.0.1:14000" 10 || fail "pebble did not start"
export SSL_CERT_FILE=$work/pebble/cert.pem # inkan trusts Pebble's API
# acme_inkan NAME DOMAIN CHALLENGE_LISTEN CHALLENGE [DIRECTORY]: starts inkan
# (in this shell, so that its PID is stopped at exit); sets smtps, sub, pid.
acme_inkan() {
	smtps=$(freeport)
	sub=$(freeport)
	mkdir -p "$work/$1"
	cat >"$work/$1.yaml" <<EOF
hostname: relay.sec.test
data_dir: $work/$1/data
listen: {smtps: "127.0.0.1:$smtps", submission: "127.0.0.1:$sub", relay: "", http: "", local: ""}
queue: {maildrop: ""}
delivery: {resolver: "$resolver"}
tls:
  acme: {domains: [$2], challenge_listen: "$3", challenge: $4, directory_url: "${5:-https://127.0.0.1:14000/dir}"}
EOF
	"$work/inkan" serve -quiet -config "$work/$1.yaml" >>"$work/$1.log" 2>&1 &
	pid=$!
	pids+=($pid)
}
# served PORT [starttls]: issuer CN and serial of the certificate on PORT
served() {
	local extra=()
	[ "${2:-}" = starttls ] && extra=(-starttls smtp)
	openssl s_client -connect "127.0.0.1:$1" -servername mail.sec.test "${extra[@]}" </dev/null 2>/dev/null |
		openssl x509 -noout -issuer -serial 2>/dev/null | tr '\n' ' '
}
acme_inkan acme-http mail.sec.test 127.0.0.1:5002 http-01
http_pid=$pid
waitfor "$work/acme-http.log" "ACME certificate ready" 40 || fail "HTTP-01: no certificate from Pebble"
first=$(served "$smtps")
echo "$first" | grep -q "Pebble Intermediate" || fail "465 serves no Pebble certificate: $first"
[ "$(served "$sub" starttls)" = "$first" ] || fail "587 (STARTTLS) serves another certificate"
curl -sfk https://127.0.0.1:15000/roots/0 >"$work/pebble/root.pem" || fail "Pebble root"
openssl s_client -connect "127.0.0.1:$smtps" -servername mail.sec.test -CAfile "$work/pebble/root.pem" \
	-verify_hostname mail.sec.test -verify_return_error </dev/null >/dev/null 2>&1 || fail "the served chain does not verify to Pebble's root"
# A client that takes no ECDSA certificate (an old device) gets autocert's
# RSA one, ordered from Pebble during its handshake.
rsa=$(openssl s_client -connect "127.0.0.1:$smtps" -servername mail.sec.test -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256 \
	-sigalgs 'RSA+SHA256:RSA-PSS+SHA256' </dev/null 2>/dev/null | openssl x509 -noout -issuer -text 2>/dev/null || true)
echo "$rsa" | grep -q "Pebble Intermediate" && echo "$rsa" | grep -q "Public Key Algorithm: rsaEncryption" ||
	fail "a client without ECDSA got no RSA certificate from Pebble: $(echo "$rsa" | head -3)"
say "renewal (60 s certificates renew after 40 s), served without restart"
waitfor "$work/acme-http.log" "ACME certificate renewed" 60 || fail "no renewal"
second=$(served "$smtps")
echo "$second" | grep -q "Pebble Intermediate" && [ "$second" != "$first" ] || fail "the renewed certificate is not served: $first / $second"
kill -0 "$http_pid" || fail "inkan restarted or died"

say "TLS-ALPN-01"
acme_inkan acme-alpn alpn.sec.test 127.0.0.1:5001 tls-alpn-01
waitfor "$work/acme-alpn.log" "ACME certificate ready" 40 || fail "TLS-ALPN-01: no certificate from Pebble"
# Only TLS-ALPN-01 was on offer: challenge tls-alpn-01 registers no HTTP-01 handler.
echo "$(served "$smtps")" | grep -q "Pebble Intermediate" || fail "TLS-ALPN-01: 465 serves no Pebble certificate"

say "CA gone: the cache serves after a restart; without a cache, self-signed and a clear error"
kill "$http_pid"; wait "$http_pid" 2>/dev/null || true
kill "$pebble_pid"; wait "$pebble_pid" 2>/dev/null || true
: >"$work/acme-http.log"
acme_inkan acme-http mail.sec.test 127.0.0.1:5002 http-01
waitfor "$work/acme-http.log" "inkan started" 10 || fail "restart"
echo "$(served "$smtps")" | grep -q "Pebble Intermediate" || fail "cached certificate not served after restart: $(served "$smtps")"
acme_inkan acme-down mail.sec.test 127.0.0.1:5003 http-01 https://127.0.0.1:9/dir
smtps3=$smtps sub3=$sub
waitfor "$work/acme-down.log" "ACME: no certificate; serving the self-signed one meanwhile" 20 || fail "no clear error with the CA down"
grep -q "ca=https://127.0.0.1:9/dir" "$work/acme-down.log" || fail "the error does not name the CA"
echo "$(served "$smtps3")" | grep -q "issuer=O = inkan self-signed, CN = relay.sec.test" || fail "no self-signed fallback on 465: $(served "$smtps3")"
echo "$(served "$sub3" starttls)" | grep -q "issuer=O = inkan self-signed, CN = relay.sec.test" || fail "no self-signed fallback on 587"

say "transport security ok"
