#!/usr/bin/python3
"""An OAuth2 provider stand-in for the interop checks: a token endpoint and an
SMTP relay that accepts only XOAUTH2 and OAUTHBEARER (RFC 7628) with a token
the endpoint issued, written from the specifications, independently of inkan's
Go code.

usage: oauth2_relay.py HOST SMTP_PORT TOKEN_PORT DIR CERT KEY

Token endpoint: POST http://HOST:TOKEN_PORT/token, grant_type=refresh_token,
client_id=client-1; the valid refresh tokens are the lines of DIR/refresh-valid
(read at each request, so the caller revokes one by rewriting the file). Access
tokens live for an hour; creating DIR/revoke-access revokes those issued so far
(the file is removed when read).

SMTP relay: STARTTLS with CERT/KEY, then AUTH XOAUTH2 or OAUTHBEARER only. A
refused token gets the JSON error challenge, then 535 (XOAUTH2) or 501 after
the client's cancel (OAUTHBEARER). Each attempt is a line in DIR/auth.log:
"MECH USER ok" or "MECH USER refused"; each message is DIR/NNNN.eml. Runs until
SIGTERM/SIGINT. A session whose token was revoked since its login gets 421
at its next MAIL.
"""
import base64
import http.server
import json
import os
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import urllib.parse

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

ACCESS = {}  # token -> expiry (epoch seconds)
LOCK = threading.Lock()
ERROR_JSON = b'{"status":"401","schemes":"bearer","scope":"https://outlook.office.com/SMTP.Send"}'
XOAUTH2_RE = re.compile(rb"^user=([^\x01]+)\x01auth=Bearer ([^\x01]+)\x01\x01$")


def valid(directory, token):
    flag = os.path.join(directory, "revoke-access")
    with LOCK:
        if os.path.exists(flag):
            ACCESS.clear()
            os.remove(flag)
        return ACCESS.get(token, 0) > time.time()


def token_handler(directory):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(n).decode())
            get = lambda k: form.get(k, [""])[0]
            try:
                with open(os.path.join(directory, "refresh-valid")) as f:
                    good = set(l.strip() for l in f if l.strip())
            except FileNotFoundError:
                good = set()
            if self.path != "/token" or get("grant_type") != "refresh_token" or \
                    get("client_id") != "client-1" or get("refresh_token") not in good:
                body = json.dumps({"error": "invalid_grant",
                                   "error_description": "AADSTS50173: The provided grant has expired due to it being revoked."})
                self.send_response(400)
            else:
                token = "at-" + secrets.token_hex(16)
                with LOCK:
                    ACCESS[token] = time.time() + 3600
                body = json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 3600})
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

    return Handler


class Relay:
    def __init__(self, directory):
        self.dir = directory
        self.n = 0

    def log(self, line):
        with open(os.path.join(self.dir, "auth.log"), "a") as f:
            f.write(line + "\n")

    async def initial(self, server, args):
        if len(args) == 2:
            return base64.b64decode(args[1], validate=True)
        return await server.challenge_auth("")

    async def refuse(self, server, mech, user):
        self.log("%s %s refused" % (mech, user))
        answer = await server.challenge_auth(ERROR_JSON)
        if not isinstance(answer, bytes):  # '*': 501 was sent already
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")

    async def auth_XOAUTH2(self, server, args):
        blob = await self.initial(server, args)
        m = XOAUTH2_RE.match(blob) if isinstance(blob, bytes) else None
        if not m:
            self.log("XOAUTH2 - malformed")
            return AuthResult(success=False, handled=False, message="501 5.5.2 malformed XOAUTH2 response")
        user, token = m.group(1).decode(), m.group(2).decode()
        if not valid(self.dir, token):
            return await self.refuse(server, "XOAUTH2", user)
        self.log("XOAUTH2 %s ok" % user)
        return AuthResult(success=True, auth_data=(user, token))

    async def auth_OAUTHBEARER(self, server, args):
        blob = await self.initial(server, args)
        if not isinstance(blob, bytes):
            return AuthResult(success=False, handled=True)
        # gs2-header "n,a=USER," then ^A-separated key=value pairs, ^A^A at the end
        head, _, rest = blob.partition(b"\x01")
        parts = head.split(b",")
        user = parts[1][2:].decode() if len(parts) >= 2 and parts[1].startswith(b"a=") else ""
        kv = dict(p.split(b"=", 1) for p in rest.split(b"\x01") if b"=" in p)
        auth = kv.get(b"auth", b"")
        if parts[0] != b"n" or not blob.endswith(b"\x01\x01") or not auth.lower().startswith(b"bearer "):
            self.log("OAUTHBEARER - malformed")
            return AuthResult(success=False, handled=False, message="501 5.5.2 malformed OAUTHBEARER response")
        if not valid(self.dir, auth[7:].decode()):
            return await self.refuse(server, "OAUTHBEARER", user)
        self.log("OAUTHBEARER %s ok" % user)
        return AuthResult(success=True, auth_data=(user, auth[7:].decode()))

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # A session logged in with a token revoked since ends, as providers do.
        data = session.auth_data
        if isinstance(data, tuple) and not valid(self.dir, data[1]):
            return "421 4.7.0 the token of this session was revoked; closing"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        name = "%04d.eml" % self.n
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.dir, name))
        return "250 2.0.0 Ok: saved as " + name


def main(argv):
    if len(argv) != 7:
        sys.stderr.write(__doc__)
        return 2
    host, smtp_port, token_port, directory, cert, key = argv[1], int(argv[2]), int(argv[3]), argv[4], argv[5], argv[6]
    os.makedirs(directory, exist_ok=True)
    httpd = http.server.ThreadingHTTPServer((host, token_port), token_handler(directory))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctl = Controller(Relay(directory), hostname=host, port=smtp_port, tls_context=ctx, require_starttls=True,
                     auth_require_tls=True, auth_exclude_mechanism=["LOGIN", "PLAIN"],
                     authenticator=lambda *a: AuthResult(success=False), auth_required=True, ready_timeout=10)
    ctl.start()
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    print("relay on %s:%d, token endpoint on %s:%d" % (host, smtp_port, host, token_port), flush=True)
    while not stop.wait(0.5):
        pass
    ctl.stop()
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
