#!/usr/bin/python3
"""DKIM helpers for the interop checks (dkimpy, offline DNS map).

usage:
  dkimcheck.py verify DNSMAP [--require ALG:DOMAIN:SELECTOR ...] FILE...
      Verifies every DKIM-Signature of every file (not only the first one, as
      dkim.verify does) against DNSMAP ("name TXT-value" lines, as for
      bench/dkim_verify.py). One line per file. A file fails when any
      signature fails or a required ALG:DOMAIN:SELECTOR signature is missing.
  dkimcheck.py split OUTDIR FILE...
      Writes OUTDIR/<file>.<n>.<alg>.eml: a copy of FILE that keeps only its
      n-th DKIM-Signature, so a verifier that reports one verdict per message
      (opendkim-testmsg) can be asked about each signature separately.
  dkimcheck.py sigs FILE
      Prints one line per DKIM-Signature: "a=.. d=.. s=.. i=.." (sorted).
"""
import os
import re
import sys

try:
    import dkim
except ImportError:
    sys.stderr.write("dkimpy missing: apt-get install python3-dkim\n")
    sys.exit(2)


def load_map(path):
    m = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, val = line.partition(" ")
            name = name.rstrip(".").lower()
            m[name] = m.get(name, "") + val.strip()
    return m


def read_crlf(path):
    with open(path, "rb") as f:
        msg = f.read()
    return msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def split_header(msg):
    """Returns ([raw field bytes incl. CRLFs], rest) for a CRLF message;
    rest starts with the blank line that ends the header."""
    end = msg.find(b"\r\n\r\n")
    if end < 0:
        head, body = msg, b""
    else:
        head, body = msg[: end + 2], msg[end + 2:]
    fields = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        else:
            fields.append(line + b"\r\n")
    return fields, body


def is_sig(field):
    return field.lower().startswith(b"dkim-signature:")


def tags(value):
    """Parses a DKIM tag list (str) into a dict with whitespace removed."""
    out = {}
    for part in value.split(";"):
        k, eq, v = part.partition("=")
        if eq:
            out[re.sub(r"\s+", "", k)] = re.sub(r"\s+", "", v)
    return out


def sig_tags(field):
    return tags(field.split(b":", 1)[1].decode("ascii", "replace"))


def describe(t):
    return "a=%s d=%s s=%s i=%s" % (t.get("a", "?"), t.get("d", "?").lower(), t.get("s", "?"), t.get("i", "-"))


def cmd_verify(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    mapping = load_map(argv[0])
    files, required = [], []
    it = iter(argv[1:])
    for a in it:
        if a == "--require":
            alg, d, s = next(it).split(":")
            required.append((alg, d.lower(), s))
        else:
            files.append(a)

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        v = mapping.get(name.rstrip(".").lower())
        return v.encode() if v is not None else None

    failed = 0
    for path in files:
        msg = read_crlf(path)
        fields, _ = split_header(msg)
        sigs = [sig_tags(f) for f in fields if is_sig(f)]
        results, ok_set, bad = [], set(), False
        for i, t in enumerate(sigs):
            try:
                ok = dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc)
                why = "" if ok else " (signature did not verify)"
            except Exception as e:  # dkim.DKIMException, parse errors
                ok, why = False, " (%s: %s)" % (type(e).__name__, e)
            results.append("%s s=%s: %s%s" % (t.get("a"), t.get("s"), "ok" if ok else "BAD", why))
            if ok:
                ok_set.add((t.get("a"), t.get("d", "").lower(), t.get("s")))
            else:
                bad = True
        missing = [":".join(r) for r in required if r not in ok_set]
        if not sigs:
            bad = True
            results.append("no DKIM-Signature")
        if missing:
            bad = True
            results.append("missing verified " + ", ".join(missing))
        failed += bad
        print("%s %s: %s" % ("FAIL" if bad else "PASS", os.path.basename(path), "; ".join(results)))
    return 1 if failed else 0


def cmd_split(argv):
    outdir, files = argv[0], argv[1:]
    os.makedirs(outdir, exist_ok=True)
    for path in files:
        msg = read_crlf(path)
        fields, body = split_header(msg)
        idx = [i for i, f in enumerate(fields) if is_sig(f)]
        for n, keep in enumerate(idx):
            alg = sig_tags(fields[keep]).get("a", "unknown")
            out = [f for i, f in enumerate(fields) if i == keep or i not in idx]
            name = os.path.join(outdir, "%s.%d.%s.eml" % (os.path.basename(path), n, alg))
            with open(name, "wb") as f:
                f.write(b"".join(out) + body)  # body starts with the blank line
            print(name)
    return 0


def cmd_sigs(argv):
    fields, _ = split_header(read_crlf(argv[0]))
    for line in sorted(describe(sig_tags(f)) for f in fields if is_sig(f)):
        print(line)
    return 0


def main(argv):
    cmds = {"verify": cmd_verify, "split": cmd_split, "sigs": cmd_sigs}
    if len(argv) < 2 or argv[1] not in cmds:
        sys.stderr.write(__doc__)
        return 2
    return cmds[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
