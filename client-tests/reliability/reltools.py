# SPDX-License-Identifier: BSD-3-Clause
"""reltools.py — small helpers of the reliability tests' Python parts: NBD pattern writes/checks through
libnbd, and failure reporting. The control connection is the nbdsnap package's Client (python/nbdsnap, on
PYTHONPATH from client-tests/functions.sh); its refusals fail the test through main_wrapper. One Python process per test keeps
the short mode cheap on loaded machines (a qemu-io or python start costs up to a second there)."""
import sys

import nbd
import nbdsnap

MiB = 1024 * 1024


class TestFailure(Exception):
    pass


def fail(message):
    raise TestFailure(message)


def ok(message):
    print("ok:", message, flush=True)


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
    except nbdsnap.Error as e:
        print("FAIL: control request failed:", e, file=sys.stderr, flush=True)
        sys.exit(1)
    except nbd.Error as e:
        print("FAIL: unexpected NBD error:", e, file=sys.stderr, flush=True)
        raise
