#!/usr/bin/python3
"""Verify EVERY DKIM-Signature of message files (shared/bench/dkim_verify.py
checks only the topmost one; dual RSA+Ed25519 signing needs both checked).

usage: verify_sigs.py MAPPING_FILE MSGFILE...   (mapping as for dkim_verify.py)

One line per file: "FILE n=COUNT ALG:D:S:CANON:pass|fail ..." (CANON is
the c= tag made explicit, e.g. relaxed/relaxed; absent means simple/simple);
exit 1 if any signature fails, 2 on usage error.
"""
import sys

import dkim


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    mapping = {}
    with open(argv[1], encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, val = line.partition(" ")
            name = name.rstrip(".").lower()
            mapping[name] = mapping.get(name, "") + val.strip()

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        v = mapping.get(name.rstrip(".").lower())
        return v.encode() if v is not None else None

    bad = 0
    for path in argv[2:]:
        with open(path, "rb") as f:
            msg = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        d = dkim.DKIM(msg)
        n = len([1 for k, _ in d.headers if k.lower() == b"dkim-signature"])
        out = []
        for i in range(n):
            try:
                ok = d.verify(idx=i, dnsfunc=dnsfunc)
            except Exception as e:  # malformed signature or key
                ok = False
                sys.stderr.write(f"{path} sig {i}: {type(e).__name__}: {e}\n")
            sf = d.signature_fields or {}
            alg = sf.get(b"a", b"?").decode()
            dom = sf.get(b"d", b"?").decode()
            sel = sf.get(b"s", b"?").decode()
            canon = sf.get(b"c", b"simple/simple").decode().strip().lower()
            if "/" not in canon:
                canon += "/simple"
            out.append(f"{alg}:{dom}:{sel}:{canon}:{'pass' if ok else 'fail'}")
            bad += 0 if ok else 1
        print(f"{path} n={n} {' '.join(out)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
