#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""crash.py — writes with periodic flushes until the server is killed with SIGKILL, then checks durability.

  crash.py load SOCK PIDFILE STATEFILE FLUSHES ORIGIN...
      Two writer connections per origin, each owning half of it, write 4 KiB blocks naming (origin, block,
      seq) with seq increasing per writer, and flush every few writes. For every flush that completed, the
      writes acknowledged before that flush was sent are durable. After FLUSHES completed flushes in total,
      the server (pid in PIDFILE) gets SIGKILL. STATEFILE receives, per origin and block, the durable seq and
      the highest seq ever sent.
  crash.py verify SOCK STATEFILE
      Every block must hold a write of its own (origin, block) with durable <= seq <= highest sent, or zeroes
      (the initial content) when nothing durable was written there.
"""
import json
import os
import random
import signal
import struct
import sys
import threading
import time

import nbd

from reltools import connect, fail, ok, main_wrapper

BLOCK = 4096
HEADER = struct.Struct("<8sIQQ")
MAGIC = b"NBDSNAPC"


def block_bytes(oi, block, seq):
    h = HEADER.pack(MAGIC, oi, block, seq)
    return (h * (BLOCK // len(h) + 1))[:BLOCK]


def load(sock, pidfile, statefile, flushes, origins):
    lock = threading.Lock()
    durable = {o: {} for o in origins}
    sent = {o: {} for o in origins}
    flushed = [0]
    stop = threading.Event()
    killed = threading.Event()
    errors = []

    def writer(oi, origin, half):
        rng = random.Random(oi * 2 + half)
        h = connect(sock, origin)
        blocks = h.get_size() // BLOCK
        lo, hi = (0, blocks // 2) if half == 0 else (blocks // 2, blocks)
        acked = {}
        seq = 0
        try:
            while not stop.is_set():
                for _ in range(rng.randint(1, 8)):
                    seq += 1
                    block = rng.randrange(lo, hi)
                    with lock:
                        sent[origin][block] = seq
                    h.pwrite(block_bytes(oi, block, seq), block * BLOCK)
                    acked[block] = seq
                snapshot = dict(acked)
                h.flush()
                with lock:
                    durable[origin].update(snapshot)
                    flushed[0] += 1
        except nbd.Error:
            if not killed.is_set():
                errors.append(f"{origin}: request failed before the kill")

    for o in origins:  # a clean start (zeroes), so earlier rounds' data cannot pass for this round's
        h = connect(sock, o)
        h.zero(h.get_size(), 0)
        h.flush()
        h.shutdown()
    threads = [threading.Thread(target=writer, args=(oi, o, half))
               for oi, o in enumerate(origins) for half in (0, 1)]
    for t in threads:
        t.start()
    while flushed[0] < flushes and not errors:
        time.sleep(0.01)
    with open(pidfile) as f:
        pid = int(f.read())
    killed.set()
    os.kill(pid, signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    if errors:
        fail("; ".join(errors))
    with open(statefile, "w") as f:
        json.dump({"origins": origins, "durable": durable, "sent": sent}, f)
    ok(f"killed the server after {flushed[0]} flushes; "
       f"{sum(len(d) for d in durable.values())} blocks with durable writes recorded")


def verify(sock, statefile):
    with open(statefile) as f:
        state = json.load(f)
    checked = 0
    for oi, origin in enumerate(state["origins"]):
        durable = {int(k): v for k, v in state["durable"][origin].items()}
        sent = {int(k): v for k, v in state["sent"][origin].items()}
        h = connect(sock, origin)
        size = h.get_size()
        problems = []
        for off in range(0, size, 4 * 1024 * 1024):
            data = h.pread(min(4 * 1024 * 1024, size - off), off)
            for i in range(len(data) // BLOCK):
                block = off // BLOCK + i
                sec = data[i * BLOCK:(i + 1) * BLOCK]
                want = durable.get(block, 0)
                if sec == bytes(BLOCK):
                    seq = 0
                else:
                    magic, o, b, seq = HEADER.unpack_from(sec)
                    if magic != MAGIC or (o, b) != (oi, block) or sec != block_bytes(oi, block, seq):
                        problems.append(f"{origin} block {block}: foreign or torn content {sec[:32]!r}")
                        continue
                if not want <= seq <= sent.get(block, 0):
                    problems.append(f"{origin} block {block}: seq {seq}, expected durable {want} .. sent "
                                    f"{sent.get(block, 0)}")
                checked += 1
        h.shutdown()
        if problems:
            fail(f"{len(problems)} blocks lost acknowledged+flushed writes:\n  " + "\n  ".join(problems[:20]))
    ok(f"every flushed write survived the kill ({checked} blocks checked)")


def main():
    if sys.argv[1] == "load":
        load(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6:])
    else:
        verify(sys.argv[2], sys.argv[3])


main_wrapper(main)
