#!/usr/bin/python3
"""control.py — sends one nbdsnap control request (a JSON line) and prints the reply line (reliability tests).

Exits 1 when the reply's "ok" is not the expected one (true, or false with --expect-error).
"""
import json
import socket
import sys


def request(path, line):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()


def main():
    args = sys.argv[1:]
    expect_ok = True
    if args and args[0] == "--expect-error":
        expect_ok = False
        args = args[1:]
    path, line = args
    reply = request(path, line)
    print(reply)
    if json.loads(reply).get("ok") is not expect_ok:
        print(f"control request {line} answered {reply}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
