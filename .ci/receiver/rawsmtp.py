#!/usr/bin/python3
"""Send one message with the exact bytes a client would, and show the dialogue.

usage: rawsmtp.py HOST PORT SOURCE_IP GREETING MAIL_FROM RCPT DATA_FILE

GREETING is the whole first command ("HELO NPI3A2B1", "EHLO app.example.com").
MAIL_FROM and RCPT are written between < > as given ("root" gives
MAIL FROM:<root>). DATA_FILE is sent as it is (bare LF, 8-bit bytes and all),
followed by CRLF.CRLF. Exits 0 when the message was accepted (250 after
DATA), 1 otherwise.
"""
import socket
import sys


def main():
    host, port, src, greeting, mail_from, rcpt, data_file = sys.argv[1:8]
    s = socket.create_connection((host, int(port)), timeout=20, source_address=(src, 0))
    f = s.makefile("rb")

    def reply():
        lines = []
        while True:
            line = f.readline()
            if not line:
                raise SystemExit("connection closed")
            lines.append(line.decode("latin-1").rstrip("\r\n"))
            print("<- " + lines[-1])
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3])

    def cmd(text):
        print("-> " + text)
        s.sendall(text.encode() + b"\r\n")
        return reply()

    reply()
    cmd(greeting)
    if cmd("MAIL FROM:<%s>" % mail_from) != 250:
        return 1
    if cmd("RCPT TO:<%s>" % rcpt) != 250:
        return 1
    if cmd("DATA") != 354:
        return 1
    data = open(data_file, "rb").read()
    print("-> (%d bytes%s)" % (len(data), ", bare LF" if b"\n" in data.replace(b"\r\n", b"") else ""))
    # The end of data is CRLF.CRLF whatever the lines before used: a device
    # that ends it with a bare LF is refused by every server that guards
    # against SMTP smuggling (inkan, Postfix with smtpd_forbid_bare_newline).
    s.sendall(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    code = reply()
    cmd("QUIT")
    return 0 if code == 250 else 1


if __name__ == "__main__":
    sys.exit(main())
