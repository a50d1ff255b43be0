#!/usr/bin/python3
"""An old device's TLS client: Python's ssl limited to what 2010-2018 printers
speak, logging in and sending one message.

usage: oldtls.py HOST PORT ssl|starttls tls1|tls1_1|rsakex USER PASS FROM TO SUBJECT

tls1 / tls1_1: only that TLS version; rsakex: TLS 1.2 with RSA key exchange
(AES128-SHA, AES256-SHA) only. Prints what was negotiated. Exit 0 when the
message was accepted, 3 when the TLS handshake was refused, 1 otherwise.
"""
import smtplib
import ssl
import sys


def context(kind):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if kind == "rsakex":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("AES128-SHA:AES256-SHA:@SECLEVEL=0")
    else:
        v = {"tls1": ssl.TLSVersion.TLSv1, "tls1_1": ssl.TLSVersion.TLSv1_1}[kind]
        ctx.minimum_version = ctx.maximum_version = v
        # OpenSSL 3 needs security level 0 for TLS 1.0/1.1 (SHA-1 signatures)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def main(argv):
    if len(argv) != 10:
        sys.stderr.write(__doc__)
        return 2
    host, port, mode, kind, user, pw, frm, to, subject = argv[1:]
    ctx = context(kind)
    try:
        if mode == "ssl":
            s = smtplib.SMTP_SSL(host, int(port), context=ctx, timeout=20)
        else:
            s = smtplib.SMTP(host, int(port), timeout=20)
            s.ehlo("printer.example.com")
            s.starttls(context=ctx)
    except (ssl.SSLError, ConnectionResetError, smtplib.SMTPServerDisconnected) as e:
        print("TLS refused: %s" % e)
        return 3
    print("negotiated %s %s" % (s.sock.version(), s.sock.cipher()[0]))
    s.ehlo("printer.example.com")
    s.login(user, pw)
    msg = "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nScanned document.\r\n" % (frm, to, subject)
    s.sendmail(frm, [to], msg)
    s.quit()
    print("accepted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
