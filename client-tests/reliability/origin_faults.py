#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""origin_faults.py — the origin device fails under the engine (nbdkit's error filter below the nbdsnap filter).

Usage: origin_faults.py NBD_SOCK CONTROL_SOCK DIR PREAD_INJECT PWRITE_INJECT ROUNDS
Origin "a" (16 MiB, dir= mode) is served through `--filter=error` whose reads fail while PREAD_INJECT exists
and whose writes fail (EIO) while PWRITE_INJECT exists. Block i (64 KiB) of the origin holds byte i+1 at take.
  1. pwrite errors: the client's write fails with EIO; the snapshot stays healthy and its image still shows the
     take-time data (copy-on-write happened before the origin write); the origin keeps whatever the failed
     write left only where it was written (not checked), and a retry after the fault succeeds.
  2. pread errors toggled while a writer writes the origin and readers read the image: every image read either
     fails or returns exactly the take-time bytes; every origin write succeeds (invariant 2); the snapshot ends
     corrupted (the copy-on-write read failed) with one corrupted event, or stays taken if no copy hit a fault.
"""
import errno
import os
import random
import sys
import threading

import nbd

from reltools import MiB, connect, fail, ok, main_wrapper
import nbdsnap

SOCK, CTL, DIR, PREAD, PWRITE, ROUNDS = sys.argv[1:6] + [int(sys.argv[6])]
SIZE = 16 * MiB
BLK = 65536


def take_time(block):
    return bytes([(block % 255) + 1]) * BLK


def main():
    c = nbdsnap.Client(CTL)
    h = connect(SOCK, "a")
    for rnd in range(1, ROUNDS + 1):
        for b in range(SIZE // BLK):
            h.pwrite(take_time(b), b * BLK)
        h.flush()
        name = f"pw{rnd}"
        c.call("snapshot-create", name=name, origins=["a"], storage=[{"path": f"{DIR}/{name}.diff", "size": 32 * MiB}])
        c.call("snapshot-take", name=name)
        img = connect(SOCK, f"a@{name}")

        # 1. Origin write errors reach the client as EIO; the snapshot is unaffected.
        open(PWRITE, "w").close()
        try:
            h.pwrite(b"\xee" * 3 * BLK, 5 * BLK + 512)
            fail("an origin write succeeded although the origin device failed it")
        except nbd.Error as e:
            if e.errno not in (errno.EIO, "EIO"):
                fail(f"origin write error reached the client as {e.errno} ({e}), expected EIO")
        finally:
            os.unlink(PWRITE)
        info = c.snapshot_info(name)
        if info["state"] != "taken":
            fail(f"a failed origin write changed the snapshot: {info}")
        for b in range(4, 10):
            if img.pread(BLK, b * BLK) != take_time(b):
                fail(f"image block {b} differs from take time after a failed origin write")
        h.pwrite(b"\xdd" * 3 * BLK, 5 * BLK + 512)
        if h.pread(3 * BLK, 5 * BLK + 512) != b"\xdd" * 3 * BLK:
            fail("origin write after the fault cleared did not read back")
        ok(f"round {rnd}: origin write error reached the client as EIO, snapshot kept its take-time data")
        img.shutdown()
        c.call("snapshot-destroy", name=name)

        # 2. Copy-on-write read failures, toggled under load.
        for b in range(SIZE // BLK):
            h.pwrite(take_time(b), b * BLK)
        name = f"pr{rnd}"
        c.call("snapshot-create", name=name, origins=["a"], storage=[{"path": f"{DIR}/{name}.diff", "size": 32 * MiB}])
        c.call("snapshot-take", name=name)
        seq = c.wait_events(0)["last_sequence"]
        stop = threading.Event()
        warm = threading.Event()  # the readers have read good data before faults and writes begin
        errors = []
        counts = {"writes": 0, "image_reads_ok": 0, "image_reads_failed": 0}

        def writer():
            rng = random.Random(rnd)
            w = connect(SOCK, "a")
            warm.wait(60)
            try:
                for i in range(300):
                    off = rng.randrange(0, SIZE - BLK, 512)
                    n = rng.choice([512, 4096, BLK, 3 * BLK])
                    n = min(n, SIZE - off)
                    w.pwrite(bytes([0xF0 | (i % 15)]) * n, off)
                    counts["writes"] += 1
            except nbd.Error as e:
                errors.append(f"origin write failed while copy-on-write reads failed: {e}")
            stop.set()

        def reader(seed):
            rng = random.Random(seed)
            r = connect(SOCK, f"a@{name}")
            while not stop.is_set():
                b = rng.randrange(SIZE // BLK)
                try:
                    data = r.pread(BLK, b * BLK)
                except nbd.Error:
                    counts["image_reads_failed"] += 1
                    continue
                if data != take_time(b):
                    errors.append(f"image a@{name} block {b}: wrong bytes {data[:8]!r}..., expected "
                                  f"{take_time(b)[:8]!r}...")
                    stop.set()
                counts["image_reads_ok"] += 1
                if counts["image_reads_ok"] >= 100:
                    warm.set()

        def toggler():
            rng = random.Random(rnd + 100)
            warm.wait(60)
            while not stop.is_set():
                open(PREAD, "w").close()
                stop.wait(rng.uniform(0.001, 0.05))
                os.unlink(PREAD)
                stop.wait(rng.uniform(0.001, 0.05))

        threads = [threading.Thread(target=writer), threading.Thread(target=toggler)] + \
                  [threading.Thread(target=reader, args=(s,)) for s in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if os.path.exists(PREAD):
            os.unlink(PREAD)
        if errors:
            fail("\n  ".join(errors[:10]))
        info = c.snapshot_info(name)
        corrupted = [e for e in c.wait_events(seq)["events"] if e["type"] == "corrupted" and e["snapshot"] == name]
        if info["state"] == "corrupted":
            if len(corrupted) != 1:
                fail(f"{name}: corrupted with {len(corrupted)} corrupted events")
            if img_read_ok(name):
                fail(f"{name}: corrupted image still serves data")
        elif corrupted:
            fail(f"{name}: corrupted event but state {info['state']}")
        ok(f"round {rnd}: pread faults under load: {counts}, snapshot {info['state']}"
           f" ({info['corruption_reason'] or 'no copy hit a fault'}); no wrong bytes")
        c.call("snapshot-destroy", name=name)
        if os.path.exists(f"{DIR}/{name}.diff"):
            fail(f"{name}: storage file left after destroy")


def img_read_ok(name):
    r = connect(SOCK, f"a@{name}")
    try:
        r.pread(BLK, 0)
        return True
    except nbd.Error:
        return False


main_wrapper(main)
