"""free-ports.py N: print N distinct TCP ports free on 127.0.0.1.

All N sockets are bound before any is closed, so the kernel cannot hand
the same just-freed port out twice (two listeners of one inkan config on
one port make it refuse to start)."""
import socket
import sys

socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
