#!/usr/bin/python3
"""Python smtplib clients for the interop checks. Each command prints what it
saw and exits 0 when the server behaved as expected, 1 when not.

usage:
  smtpcheck.py ssl HOST PORT USER PASS FROM TO SUBJECT
      SMTP_SSL (implicit TLS), login(), send_message(); expects 250 ... queued.
  smtpcheck.py starttls HOST PORT USER PASS FROM TO SUBJECT
      SMTP, starttls(), login(), send_message(); expects 250 ... queued.
  smtpcheck.py authbeforetls HOST PORT USER PASS
      EHLO must not offer AUTH before STARTTLS, AUTH PLAIN sent anyway must be
      refused with 5xx, and AUTH must be offered after STARTTLS.
  smtpcheck.py untrusted HOST PORT MODE SRCIP FROM TO SUBJECT CODE
      No AUTH, from source address SRCIP, MODE plain|ssl|starttls; expects the
      sender or recipient to be refused with reply CODE (e.g. 530) and no
      message accepted.
  smtpcheck.py eqvsend HOST PORT TO VARIANT SENDERS_FILE
      For line N of SENDERS_FILE (a header From value), sends a message with
      that From and Subject "eqv-VARIANT-N" (MAIL FROM = the bare address).
"""
import email.message
import email.utils
import smtplib
import ssl
import sys

TIMEOUT = 20


def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE  # inkan uses a self-signed certificate here
    return c


class Recorder:
    """Mixin keeping the reply to DATA, which send_message does not return."""
    last_data = None

    def data(self, msg):
        r = super().data(msg)
        self.last_data = r
        return r


class RecSMTP(Recorder, smtplib.SMTP):
    pass


class RecSMTPSSL(Recorder, smtplib.SMTP_SSL):
    pass


def message(frm, to, subject):
    m = email.message.EmailMessage()
    m["From"] = frm
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = email.utils.formatdate(localtime=False)
    m["Message-ID"] = email.utils.make_msgid(domain="interop.example.com")
    m.set_content("Interop test message %s.\nSecond line.\n" % subject)
    return m


def queued(reply):
    if reply is None:
        return False
    code, text = reply
    return code == 250 and b"queued" in text


def report(ok, what):
    print("%s %s" % ("ok" if ok else "UNEXPECTED", what))
    return 0 if ok else 1


def cmd_ssl(host, port, user, pw, frm, to, subject):
    with RecSMTPSSL(host, int(port), timeout=TIMEOUT, context=ctx()) as s:
        s.ehlo("client.example.com")
        s.login(user, pw)
        s.send_message(message(frm, to, subject))
        return report(queued(s.last_data), "SMTP_SSL login+send_message: %r" % (s.last_data,))


def cmd_starttls(host, port, user, pw, frm, to, subject):
    with RecSMTP(host, int(port), timeout=TIMEOUT) as s:
        s.ehlo("client.example.com")
        s.starttls(context=ctx())
        s.ehlo("client.example.com")
        s.login(user, pw)
        s.send_message(message(frm, to, subject))
        return report(queued(s.last_data), "SMTP starttls+login+send_message: %r" % (s.last_data,))


def cmd_authbeforetls(host, port, user, pw):
    import base64
    bad = 0
    with smtplib.SMTP(host, int(port), timeout=TIMEOUT) as s:
        s.ehlo("client.example.com")
        bad += report("auth" not in s.esmtp_features,
                      "EHLO before STARTTLS offers AUTH: %s" % s.esmtp_features.get("auth", "(not offered)"))
        bad += report("starttls" in s.esmtp_features, "EHLO before STARTTLS offers STARTTLS")
        token = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
        code, text = s.docmd("AUTH", "PLAIN " + token)
        bad += report(500 <= code < 600, "AUTH PLAIN before STARTTLS answered %d %s" % (code, text.decode(errors="replace")))
        if code == 235:
            return 1
        s.starttls(context=ctx())
        s.ehlo("client.example.com")
        bad += report("auth" in s.esmtp_features,
                      "EHLO after STARTTLS offers AUTH: %s" % s.esmtp_features.get("auth", "(not offered)"))
    return 1 if bad else 0


def cmd_untrusted(host, port, mode, src, frm, to, subject, code):
    code = int(code)
    cls = smtplib.SMTP_SSL if mode == "ssl" else smtplib.SMTP
    kw = {"timeout": TIMEOUT, "source_address": (src, 0)}
    if mode == "ssl":
        kw["context"] = ctx()
    with cls(host, int(port), **kw) as s:
        s.ehlo("client.example.com")
        if mode == "starttls":
            s.starttls(context=ctx())
            s.ehlo("client.example.com")
        try:
            s.send_message(message(frm, to, subject))
        except smtplib.SMTPSenderRefused as e:
            return report(e.smtp_code == code, "MAIL FROM refused: %d %s" % (e.smtp_code, e.smtp_error.decode(errors="replace")))
        except smtplib.SMTPRecipientsRefused as e:
            (c, t), = e.recipients.values()
            return report(c == code, "RCPT TO refused: %d %s" % (c, t.decode(errors="replace")))
        except smtplib.SMTPDataError as e:
            return report(e.smtp_code == code, "DATA refused: %d %s" % (e.smtp_code, e.smtp_error.decode(errors="replace")))
        return report(False, "message from untrusted %s without AUTH was accepted" % src)


def cmd_eqvsend(host, port, to, variant, senders):
    bad = 0
    with open(senders, encoding="utf-8") as f:
        lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    with RecSMTP(host, int(port), timeout=TIMEOUT) as s:
        for n, frm in enumerate(lines, 1):
            addr = email.utils.parseaddr(frm)[1]
            m = message(frm, to, "eqv-%s-%d" % (variant, n))
            try:
                s.send_message(m, from_addr=addr, to_addrs=[to])
                ok = queued(s.last_data)
                why = repr(s.last_data)
            except smtplib.SMTPException as e:
                ok, why = False, "%s: %s" % (type(e).__name__, e)
                s.rset()
            bad += report(ok, "%s #%d From: %s -> %s" % (variant, n, frm, why))
    return 1 if bad else 0


def main(argv):
    cmds = {"ssl": (cmd_ssl, 7), "starttls": (cmd_starttls, 7), "authbeforetls": (cmd_authbeforetls, 4),
            "untrusted": (cmd_untrusted, 8), "eqvsend": (cmd_eqvsend, 5)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        sys.stderr.write(__doc__)
        return 2
    try:
        return cmds[argv[1]][0](*argv[2:])
    except (smtplib.SMTPException, OSError) as e:
        print("UNEXPECTED %s: %s" % (type(e).__name__, e))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
