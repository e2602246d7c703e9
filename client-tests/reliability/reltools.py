"""reltools.py — small helpers of the reliability tests' Python parts: a persistent control connection, NBD
pattern writes/checks through libnbd, and failure reporting. One Python process per test keeps the short mode
cheap on loaded machines (a qemu-io or python start costs up to a second there)."""
import json
import socket
import sys

import nbd

MiB = 1024 * 1024


class TestFailure(Exception):
    pass


def fail(message):
    raise TestFailure(message)


def ok(message):
    print("ok:", message, flush=True)


class Control:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.stream = self.sock.makefile("rwb")

    def call(self, command, **args):
        """Returns the reply object (ok or not)."""
        request = dict(command=command, **args)
        self.stream.write(json.dumps(request).encode() + b"\n")
        self.stream.flush()
        line = self.stream.readline()
        if not line:
            fail(f"control socket closed the connection on {request}")
        return json.loads(line)

    def __call__(self, command, **args):
        """Returns the reply; fails the test unless it is ok."""
        reply = self.call(command, **args)
        if not reply.get("ok"):
            fail(f"control {command} {args} failed: {reply}")
        return reply

    def last_sequence(self):
        return self("events-wait", after=0)["last_sequence"]

    def events(self, after, timeout_ms=0):
        return self("events-wait", after=after, timeout_ms=timeout_ms)["events"]

    def info(self, name):
        return self("snapshot-info", name=name)["snapshot"]


def connect(sock, export):
    h = nbd.NBD()
    h.connect_uri(f"nbd+unix:///{export}?socket={sock}")
    return h


def pattern(byte, length):
    return bytes([byte]) * length


def write_pattern(h, byte, offset, length, step=4 * MiB):
    for off in range(offset, offset + length, step):
        h.pwrite(pattern(byte, min(step, offset + length - off)), off)


def check_pattern(h, byte, offset, length, what, step=4 * MiB):
    for off in range(offset, offset + length, step):
        n = min(step, offset + length - off)
        data = h.pread(n, off)
        if data != pattern(byte, n):
            bad = next(i for i in range(n) if data[i] != byte)
            fail(f"{what}: byte {off + bad} is {data[bad]:#x}, expected {byte:#x}")


def read_fails(h, offset, length):
    try:
        h.pread(length, offset)
    except nbd.Error as e:
        return e
    return None


def main_wrapper(body):
    try:
        body()
    except TestFailure as e:
        print("FAIL:", e, file=sys.stderr, flush=True)
        sys.exit(1)
    except nbd.Error as e:
        print("FAIL: unexpected NBD error:", e, file=sys.stderr, flush=True)
        raise
