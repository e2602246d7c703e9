#!/usr/bin/python3
"""nbdsnap_control.py — sends control requests to nbdsnapd's control socket and prints the replies.

Usage: nbdsnap_control.py SOCKET 'JSON' ['JSON'...]   (one request per argument, one reply line each)
Exits 1 if any reply has "ok": false. A test helper, so tests need neither socat nor the CLI.
"""
import json
import socket
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    failed = False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sys.argv[1])
        stream = s.makefile("rwb")
        for request in sys.argv[2:]:
            json.loads(request)  # refuse malformed test input early
            stream.write(request.encode() + b"\n")
            stream.flush()
            line = stream.readline()
            if not line:
                sys.exit("control socket closed the connection")
            print(line.decode().rstrip("\n"))
            failed |= not json.loads(line).get("ok", False)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
