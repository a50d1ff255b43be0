#!/usr/bin/python3
"""SMTP sink for the interop checks: accepts every message on HOST:PORT and
saves it byte for byte.

usage: sink.py HOST PORT DIR

Each message becomes DIR/NNNN.eml (written to a temp name, then renamed, so a
reader never sees half a file). DIR/index.tsv gets one line per message:
file, Subject, MAIL FROM, RCPTs (comma separated). Runs until SIGTERM/SIGINT.
"""
import email.parser
import email.policy
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Saver:
    def __init__(self, directory):
        self.dir = directory
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        name = "%04d.eml" % self.n
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.dir, name))
        hdr = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
        subject = " ".join(str(hdr.get("Subject", "")).split())
        line = "\t".join([name, subject, envelope.mail_from or "", ",".join(envelope.rcpt_tos)])
        with open(os.path.join(self.dir, "index.tsv"), "a", encoding="utf-8") as f:
            f.write(line + "\n")
        return "250 2.0.0 Ok: saved as " + name


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    host, port, directory = argv[1], int(argv[2]), argv[3]
    os.makedirs(directory, exist_ok=True)
    ctl = Controller(Saver(directory), hostname=host, port=port,
                     enable_SMTPUTF8=True, decode_data=False, ready_timeout=10)
    ctl.start()
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    print("sink listening on %s:%d, saving to %s" % (host, port, directory), flush=True)
    while not stop.wait(0.5):
        pass
    ctl.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
