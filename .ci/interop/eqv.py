#!/usr/bin/python3
"""Compares the DKIM signatures OpenDKIM and inkan made for the same senders.

usage: eqv.py VARIANT SENDERS_FILE EQDIR SINKDIR

For line N of SENDERS_FILE (a header From value):
  EQDIR/od-VARIANT-N.out   output of `opendkim -t` (test mode prints each
                           header it would add as "### INSHEADER: ... hvalue='...'")
  EQDIR/explain-VARIANT.out  output of `inkan dkim explain ADDR1 ADDR2 ...`: one
                           block per address, in SENDERS_FILE order
  SINKDIR/index.tsv        the sink's index; inkan's copy is the message whose
                           Subject is "eqv-VARIANT-N"
Prints a table; exits 0 when every row agrees on the set of (d=, s=) pairs
(an unsigned message is the empty set), 1 otherwise. The last line,
"explain mismatches: N", counts rows where explain's "sign d= s=" lines differ
from the signatures inkan actually made.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dkimcheck  # noqa: E402


def od_sigs(path):
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError as e:
        return None, "no output (%s)" % e
    vals = re.findall(r"hname='DKIM-Signature' hvalue='(.*?)'", text, re.S)
    errs = [l.strip() for l in text.splitlines() if "no signature added" in l or "error" in l.lower()]
    return [dkimcheck.tags(v) for v in vals], "; ".join(errs)


def inkan_sigs(sinkdir, subject):
    files = []
    try:
        with open(os.path.join(sinkdir, "index.tsv"), encoding="utf-8") as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) > 1 and p[1] == subject:
                    files.append(p[0])
    except OSError:
        pass
    if not files:
        return None, "not delivered"
    msg = dkimcheck.read_crlf(os.path.join(sinkdir, files[0]))
    fields, _ = dkimcheck.split_header(msg)
    note = "delivered %d times" % len(files) if len(files) > 1 else ""
    return [dkimcheck.sig_tags(f) for f in fields if dkimcheck.is_sig(f)], note


def fmt(sigs):
    if sigs is None:
        return "?"
    if not sigs:
        return "(unsigned)"
    return "+".join(sorted("%s/%s" % (t.get("d", "?").lower(), t.get("s", "?")) for t in sigs))


def explain_blocks(path):
    """Splits `inkan dkim explain A B ...` output into one block per address."""
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        return []
    blocks = []
    for line in lines:
        if re.match(r"^\S+@\S+:$", line):
            blocks.append([])
        elif blocks and line[:1] in (" ", "\t"):
            blocks[-1].append(line.strip())
    return blocks


def explain_sigs(block):
    """Returns the (d, s) dicts of a block's "sign d=X s=Y" lines, or None."""
    if block is None:
        return None
    return [{"d": d, "s": s} for d, s in re.findall(r"^sign d=(\S+) s=(\S+)", "\n".join(block), re.M)]


def main(argv):
    if len(argv) != 5:
        sys.stderr.write(__doc__)
        return 2
    variant, senders, eqdir, sinkdir = argv[1:]
    with open(senders, encoding="utf-8") as f:
        lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    blocks = explain_blocks(os.path.join(eqdir, "explain-%s.out" % variant))
    bad = ex_bad = 0
    rows = [("#", "header From", "OpenDKIM d=/s=", "inkan d=/s=", "same", "inkan dkim explain", [])]
    for n, frm in enumerate(lines, 1):
        od, od_note = od_sigs(os.path.join(eqdir, "od-%s-%d.out" % (variant, n)))
        ik, ik_note = inkan_sigs(sinkdir, "eqv-%s-%d" % (variant, n))
        a, b = fmt(od), fmt(ik)
        same = od is not None and ik is not None and a == b and not ik_note
        bad += not same
        block = blocks[n - 1] if n <= len(blocks) else None
        ex = fmt(explain_sigs(block))
        ex_bad += ex != b
        notes = [x for x in (od_note and "OpenDKIM: " + od_note, ik_note and "inkan: " + ik_note) if x and not same]
        rows.append((str(n), frm, a, b, "yes" if same else "NO", ex, notes))
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  " + "  ".join(r[i].ljust(w[i]) for i in range(5)) + "  " + r[5])
        for note in r[6]:
            print("       %s" % note[:200])
    if len(blocks) != len(lines):
        print("  inkan dkim explain gave %d answers for %d addresses" % (len(blocks), len(lines)))
        ex_bad += 1
    print("explain mismatches: %d" % ex_bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
