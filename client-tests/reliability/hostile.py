#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""hostile.py — hostile NBD and control clients against nbdsnapd while a good client keeps working.

Usage: hostile.py NBD_SOCK CONTROL_SOCK PID ROUNDS
Origin "a" (64 MiB) with a taken snapshot "s" (image a@s). Each round: garbage connections, truncated
handshakes and request headers, 4 GiB length fields (option, READ, WRITE), a thousand connections opened
and dropped at every stage, clients that send requests and never read replies (kept open while the rest
runs), and the same kinds of abuse on the control socket. A good libnbd client writes/reads the origin and
reads the image throughout and must never see an error or wrong data. nbdsnapd's VmRSS is sampled: growth
over the post-warm-up baseline must stay under a bound, and must not keep growing from round to round.
"""
import os
import random
import socket
import struct
import sys
import threading
import time

import nbd
import nbd_raw
from nbd_raw import CMD_READ, CMD_WRITE, IHAVEOPT, go, greet, recv_exact
from nbd_raw import request_bytes as request

from reltools import MiB, connect, fail, ok, main_wrapper
import nbdsnap

SOCK, CTL, PID, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def vmrss_kib():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    fail("nbdsnapd is gone")


def alive():
    try:
        os.kill(PID, 0)
        return True
    except OSError:
        return False


def sanitized():
    with open(f"/proc/{PID}/maps") as f:
        return "libasan" in f.read()


def raw(path=SOCK, timeout=10):
    return nbd_raw.connect(path, timeout)


def transmission(name="a"):
    return nbd_raw.transmission(SOCK, name, 10)


def quietly(fn, *args):
    try:
        fn(*args)
    except (OSError, EOFError, AssertionError):
        pass


class GoodClient(threading.Thread):
    def __init__(self):
        super().__init__()
        self.stop = threading.Event()
        self.error = None
        self.rounds = 0

    def run(self):
        try:
            h = connect(SOCK, "a")
            img = connect(SOCK, "a@s")
            while not self.stop.is_set():
                block = 32 + self.rounds % 64  # blocks 32..95 of 64 KiB: above the image's checked part
                data = bytes([self.rounds % 251 + 1]) * 65536
                h.pwrite(data, block * 65536)
                if h.pread(65536, block * 65536) != data:
                    raise AssertionError(f"origin read back other data at block {block}")
                if img.pread(65536, (self.rounds % 32) * 65536) != b"\x5a" * 65536:
                    raise AssertionError("image a@s returned other data than at take")
                self.rounds += 1
            h.shutdown()
            img.shutdown()
        except Exception as e:  # noqa: BLE001
            self.error = f"{type(e).__name__}: {e}"


def garbage(rng):
    s = raw()
    quietly(recv_exact, s, 18)
    quietly(s.sendall, rng.randbytes(rng.randint(1, 4096)))
    s.close()


def truncated(rng, stage):
    s = raw()
    try:
        if stage == 0:          # half of the client flags
            recv_exact(s, 18)
            s.sendall(b"\x00\x00")
        elif stage == 1:        # half an option header
            greet(s)
            s.sendall(IHAVEOPT + b"\x00\x00")
        elif stage == 2:        # option with a short payload
            greet(s)
            s.sendall(nbd_raw.option_bytes(nbd_raw.OPT_GO, b"\x00" * 100)[:26] + b"\x00" * 10)
        else:                   # half a request header after GO
            greet(s)
            go(s, "a")
            s.sendall(request(CMD_READ, 1, 0, 4096)[:rng.randint(1, 27)])
    except (OSError, EOFError, AssertionError):
        pass
    s.close()


def huge_lengths():
    # option header with a 4 GiB - 1 length: the server must refuse or close, not allocate.
    s = raw()
    quietly(greet, s)
    quietly(s.sendall, IHAVEOPT + struct.pack(">II", nbd_raw.OPT_GO, 0xFFFFFFFF) + b"\x00" * 4096)
    s.close()
    # READ of 4 GiB - 1: an error reply (EINVAL/EOVERFLOW) or a disconnect, never 4 GiB of data.
    s = transmission()
    try:
        s.sendall(request(CMD_READ, 7, 0, 0xFFFFFFFF))
        magic, error, handle = nbd_raw.read_simple_reply(s)
        if magic == nbd_raw.SIMPLE_REPLY_MAGIC and error == 0:
            fail("a 4 GiB READ was answered with success")
    except (OSError, EOFError):
        pass
    s.close()
    # WRITE announcing 4 GiB - 1 of payload, then 1 MiB of it and a hang-up.
    s = transmission()
    quietly(s.sendall, request(CMD_WRITE, 8, 0, 0xFFFFFFFF) + b"\xab" * MiB)
    s.close()
    # WRITE beyond the end with a huge offset.
    s = transmission()
    try:
        s.sendall(request(CMD_WRITE, 9, 0xFFFFFFFFFFFF0000, 4096) + b"\xab" * 4096)
        magic, error, handle = nbd_raw.read_simple_reply(s)
        if error == 0:
            fail("a WRITE at offset 2^64-64Ki succeeded")
    except (OSError, EOFError):
        pass
    s.close()


def churn(rng, n):
    for i in range(n):
        s = raw()
        try:
            stage = i % 3
            if stage >= 1:
                recv_exact(s, 18)
            if stage == 2:
                s.sendall(struct.pack(">I", nbd_raw.CLIENT_FLAGS))
                go(s, "a" if i % 2 else "a@s")
        except (OSError, EOFError, AssertionError):
            pass
        if rng.random() < 0.5:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not FIN
        s.close()


def never_reads(n_requests):
    """Sends READs of 1 MiB and never reads a reply; returns the socket to keep it open."""
    s = transmission("a@s")
    s.setblocking(False)
    sent = 0
    blocked_since = None  # the server stopped reading requests: it applies back-pressure, as it should
    i = 0
    while i < n_requests:
        try:
            s.send(request(CMD_READ, i, (i % 16) * MiB, MiB))
            sent += 1
            i += 1
            blocked_since = None
        except BlockingIOError:
            if blocked_since is None:
                blocked_since = time.monotonic()
            elif time.monotonic() - blocked_since > 1.5:
                break
            time.sleep(0.01)
    return s, sent


def admitted_control():
    """A control connection the server serves. The sessions of the clients just dropped may still hold their
    places (their threads end when they see the close, later under ASan and load), so one more can be refused
    `busy`, as the session cap says, and closed, even before the request is sent (EPIPE); wait (bounded) for a
    place rather than flood a closed socket."""
    deadline = time.monotonic() + 30
    while True:
        c = raw(CTL)
        reply = b""
        try:
            c.sendall(b'{"command":"version"}\n')
            while not reply.endswith(b"\n"):
                data = c.recv(65536)
                if not data:
                    break
                reply += data
        except OSError as error:  # refused `busy` and closed before the request arrived (EPIPE, ECONNRESET)
            reply = repr(error).encode()
        if b'"busy"' not in reply and reply.endswith(b"\n"):
            return c
        c.close()
        if time.monotonic() > deadline:
            fail(f"no control session admitted within 30 s after the abuse: {reply[:200]!r}")
        time.sleep(0.05)


def control_abuse(rng):
    c = raw(CTL)
    quietly(c.sendall, rng.randbytes(2048) + b"\n")
    c.close()
    c = raw(CTL)
    quietly(c.sendall, b"{" * 100 + b"\n" + b'{"command": 7}\n' + b'{"command":"snapshot-info","name":"' +
            b"x" * 70000 + b'"}\n' + b"[1,2]\n")
    c.close()
    # A line longer than 1 MiB: refused, connection closed.
    c = raw(CTL)
    try:
        c.sendall(b'{"command":"version","pad":"' + b"y" * (2 * MiB))
        c.settimeout(10)
        data = c.recv(65536)
        while data and not data.endswith(b"\n"):
            data += c.recv(65536)
    except (OSError, EOFError):
        pass
    c.close()
    # Many connections opened and dropped; some half a line.
    for i in range(300):
        c = raw(CTL)
        if i % 2:
            quietly(c.sendall, b'{"command":"snapshot-li')
        c.close()
    # Requests never read: 20000 lines (a few MB of replies) with nobody reading.
    c = admitted_control()
    c.setblocking(False)
    line = b'{"command":"snapshot-list"}\n' * 100
    deadline = time.monotonic() + 5
    for _ in range(200):
        try:
            c.send(line)
        except BlockingIOError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
    return c


def main():
    rng = random.Random(6)
    c = nbdsnap.Client(CTL)
    h = connect(SOCK, "a")
    h.pwrite(b"\x5a" * 2 * MiB, 0)
    h.flush()
    h.shutdown()
    good = GoodClient()
    good.start()
    asan = sanitized()
    bound_kib = (768 if asan else 192) * 1024
    baseline = None
    per_round = []
    try:
        for rnd in range(1, ROUNDS + 1):
            t0 = time.monotonic()
            for i in range(50):
                garbage(rng)
            for i in range(100):
                truncated(rng, i % 4)
            for _ in range(2):
                huge_lengths()
            t1 = time.monotonic()
            churn(rng, 1000)
            t2 = time.monotonic()
            held = [never_reads(3000) for _ in range(2)]
            t3 = time.monotonic()
            held_ctl = control_abuse(rng)
            print(f"  timings: malformed {t1 - t0:.1f} s, churn {t2 - t1:.1f} s, never-read {t3 - t2:.1f} s, "
                  f"control {time.monotonic() - t3:.1f} s", flush=True)
            if not alive():
                fail(f"round {rnd}: nbdsnapd died")
            if good.error:
                fail(f"round {rnd}: the good client failed: {good.error}")
            if c.call("version")["protocol"] != 1:
                fail("control socket answers oddly")
            time.sleep(0.5)
            rss_held = vmrss_kib()
            for sock, _ in held:
                sock.close()
            held_ctl.close()
            time.sleep(0.5)
            rss = vmrss_kib()
            per_round.append(rss)
            if baseline is None:
                baseline = rss
            print(f"round {rnd}: VmRSS {rss_held} KiB with 2 never-reading NBD clients (queued "
                  f"{[n for _, n in held]} 1 MiB reads) and 1 control client open, {rss} KiB after they left; "
                  f"good client {good.rounds} rounds", flush=True)
            if rss_held - baseline > bound_kib:
                fail(f"VmRSS {rss_held} KiB with hostile clients open: {rss_held - baseline} KiB over the first "
                     f"round's {baseline} KiB (bound {bound_kib})")
            if rss - baseline > bound_kib // 2:
                fail(f"VmRSS keeps growing: {rss} KiB after round {rnd}, {baseline} KiB after round 1")
        held = []
        # the good client must still make progress after the abuse
        start = good.rounds
        deadline = time.monotonic() + 60
        while good.rounds < start + 20 and not good.error and time.monotonic() < deadline:
            time.sleep(0.05)
        if good.rounds < start + 20:
            fail(f"the good client stalled after the abuse: {good.error}")
    finally:
        good.stop.set()
        good.join()
    if good.error:
        fail(f"the good client failed: {good.error}")
    c.call("snapshot-info", name="s")
    ok(f"{ROUNDS} round(s) of hostile clients; VmRSS per round (KiB): {per_round}; good client {good.rounds} "
       f"rounds without error{' (ASan build)' if asan else ''}")


main_wrapper(main)
