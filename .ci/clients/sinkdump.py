#!/usr/bin/python3
"""Reads the dump file of Postfix's smtp-sink (-D FILE): one message after
another, each starting with the X-Client-Addr line smtp-sink adds.

usage: sinkdump.py count FILE SUBJECT-PREFIX       number of messages whose Subject starts so
       sinkdump.py get FILE SUBJECT OUT            write the message with that Subject to OUT (CRLF)
       sinkdump.py field FILE SUBJECT NAME         print the value(s) of header field NAME
       sinkdump.py rcpt FILE ADDRESS OUT           write the messages sent to ADDRESS to OUT
"""
import sys


def messages(path):
    try:
        data = open(path, "rb").read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    out, cur = [], []
    for line in data.split("\n"):
        if line.startswith("X-Client-Addr: ") and cur:
            out.append("\n".join(cur))
            cur = []
        cur.append(line)
    if any(cur):
        out.append("\n".join(cur))
    return out


def header(msg):
    h = msg.split("\n\n", 1)[0]
    fields, cur = [], None
    for line in h.split("\n"):
        if line[:1] in (" ", "\t") and cur is not None:
            cur[1] += " " + line.strip()
            continue
        name, _, value = line.partition(":")
        cur = [name.strip().lower(), value.strip()]
        fields.append(cur)
    return fields


def subject(msg):
    for n, v in header(msg):
        if n == "subject":
            return v
    return ""


def main(argv):
    cmd, path = argv[1], argv[2]
    msgs = messages(path)
    if cmd == "count":
        print(sum(1 for m in msgs if subject(m).startswith(argv[3])))
        return 0
    if cmd == "rcpt":
        found = [m for m in msgs if any(n == "x-rcpt-args" and v.startswith("<%s>" % argv[3]) for n, v in header(m))]
        open(argv[4], "w").write("\n\n=====\n\n".join(found))
        return 0 if found else 1
    found = [m for m in msgs if subject(m) == argv[3]]
    if not found:
        return 1
    if cmd == "get":
        open(argv[4], "w").write(found[0].replace("\n", "\r\n"))
    elif cmd == "field":
        for n, v in header(found[0]):
            if n == argv[4].lower():
                print(v)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
