#!/usr/bin/python3
"""Report what a Maildir holds for each test subject, as the receiver saw it.

usage: maildir.py MAILDIR AUTHSERV_ID SUBJECT...

For each subject prints one line:
  SUBJECT copies=N dkim=RESULT dmarc=RESULT mime=LABELS from=ADDRESS
with the results taken from the receiver's own Authentication-Results fields
(those whose authserv-id is AUTHSERV_ID; any other is what a sender claimed).
Exits 0 when every subject has exactly one copy with dkim=pass and
dmarc=pass, 1 otherwise. LABELS is "unlabelled-8bit" for a body with bytes
above 127 and no Content-Type (what SpamAssassin's PP_MIME_FAKE_ASCII_TEXT
scores), else "ok".
"""
import email
import email.policy
import glob
import os
import re
import sys


def results(msg, authserv):
    found = {}
    for ar in msg.get_all("Authentication-Results", []):
        ar = " ".join(str(ar).split())
        if ar.split(";", 1)[0].strip().lower() != authserv.lower():
            continue
        for method in ("dkim", "dmarc", "spf"):
            for m in re.finditer(r"\b%s=(\w+)" % method, ar):
                # a pass anywhere wins: two signatures give two dkim= results
                if found.get(method) != "pass":
                    found[method] = m.group(1).lower()
    return found


def main():
    maildir, authserv, subjects = sys.argv[1], sys.argv[2], sys.argv[3:]
    msgs = []
    for path in glob.glob(os.path.join(maildir, "new", "*")) + glob.glob(os.path.join(maildir, "cur", "*")):
        with open(path, "rb") as fh:
            msgs.append(email.message_from_binary_file(fh, policy=email.policy.compat32))
    bad = 0
    for subject in subjects:
        copies = [m for m in msgs if " ".join(str(m.get("Subject", "")).split()).endswith(subject)]
        r = results(copies[0], authserv) if copies else {}
        frm = str(copies[0].get("From", "")) if copies else ""
        mime = "ok"
        if copies and copies[0].get("Content-Type") is None:
            body = copies[0].get_payload(decode=False)
            if isinstance(body, str) and any(ord(c) > 127 for c in body):
                mime = "unlabelled-8bit"
        ok = len(copies) == 1 and r.get("dkim") == "pass" and r.get("dmarc") == "pass"
        bad += not ok
        print("%s copies=%d dkim=%s dmarc=%s mime=%s from=%s" % (subject, len(copies), r.get("dkim", "none"), r.get("dmarc", "none"), mime, " ".join(frm.split())))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
