#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""exhaustion.py — difference storage runs out or fails (see test-exhaustion.sh).

Usage: exhaustion.py NBD_SOCK CONTROL_SOCK DIR TMPFS_DIR ROUNDS
Origins a, b, c of 16 MiB hold 0x11 everywhere at start.
"""
import os
import sys
import time

from reltools import MiB, connect, write_pattern, check_pattern, read_fails, fail, ok, main_wrapper
import nbdsnap

SOCK, CTL, DIR, TMPFS, ROUNDS = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
SIZE = 16 * MiB


def main():
    c = nbdsnap.Client(CTL)
    h = {o: connect(SOCK, o) for o in "abc"}
    c.call("snapshot-create", name="other", origins=["c"], storage=[{"path": f"{DIR}/other.diff", "size": 32 * MiB}])
    c.call("snapshot-take", name="other")
    other = connect(SOCK, "c@other")

    def overflow_case(name, origin, byte, length):
        seq = c.wait_events(0)["last_sequence"]
        write_pattern(h[origin], byte, 0, length)
        check_pattern(h[origin], byte, 0, length, f"{name}: origin {origin} after the overflowing write")
        check_pattern(h[origin], 0x11, length, SIZE - length, f"{name}: origin {origin} beyond the write")
        # Chunks may wait in memory for the background writeback (the copy-on-write of blksnap v3 and ours), so
        # a storage that fills up there corrupts the snapshot a moment after the write returned: wait, bounded.
        deadline = time.monotonic() + 30
        info = c.snapshot_info(name)
        while info["state"] != "corrupted" and time.monotonic() < deadline:
            time.sleep(0.05)
            info = c.snapshot_info(name)
        if info["state"] != "corrupted":
            fail(f"{name}: not corrupted 30 s after the overflowing write: {info}")
        print(f"  {name}: corrupted, reason: {info['corruption_reason']}", flush=True)
        events = [e for e in c.wait_events(seq, 5)["events"] if e["type"] == "corrupted" and e["snapshot"] == name]
        if len(events) != 1:
            fail(f"{name}: {len(events)} corrupted events after sequence {seq}")
        image = connect(SOCK, f"{origin}@{name}")
        for off in (0, length // 2, SIZE - MiB):
            if read_fails(image, off, 65536) is None:
                fail(f"{name}: the corrupted image {origin}@{name} served data at {off}")
        image.shutdown()
        # The bystander keeps its take-time data while its origin changes.
        write_pattern(h["c"], 0x5C, 0, 2 * MiB)
        check_pattern(other, 0x11, 0, SIZE, f"{name}: snapshot other (bystander)")
        if c.snapshot_info("other")["state"] != "taken":
            fail(f"{name}: snapshot other changed state: {c.snapshot_info('other')}")

    for rnd in range(1, ROUNDS + 1):
        print(f"round {rnd}", flush=True)
        # 1. A limit of three chunks.
        c.call("snapshot-create", name="lim", origins=["a"], limit=196608,
          storage=[{"path": f"{DIR}/lim.diff", "size": SIZE}])
        c.call("snapshot-take", name="lim")
        overflow_case("lim", "a", 0x41, 4 * MiB)
        c.call("snapshot-destroy", name="lim")
        if os.path.exists(f"{DIR}/lim.diff"):
            fail("lim: destroy left the storage file it created")
        ok("storage limit: corrupted, origin intact, others unaffected, storage removed")

        # 2. ENOSPC on a sparse user-provided file (size 0: its existing size, nothing preallocated).
        sparse = f"{TMPFS}/sparse.diff"
        with open(sparse, "wb") as f:
            f.truncate(8 * MiB)
        c.call("snapshot-create", name="sp", origins=["b"], storage=[{"path": sparse, "size": 0}])
        c.call("snapshot-take", name="sp")
        overflow_case("sp", "b", 0x42, 8 * MiB)
        c.call("snapshot-destroy", name="sp")
        if [s["name"] for s in c.call("snapshot-list")["snapshots"]] != ["other"]:
            fail("sp: still listed after destroy")
        if not os.path.exists(sparse):
            fail("sp: destroy removed a storage file it did not create")
        os.unlink(sparse)
        ok("ENOSPC on difference storage: corrupted, origin intact, others unaffected, user file kept")

        # 3. The tmpfs is filled by someone else after create: the preallocated storage keeps working until
        #    it is full itself; appending storage on the full tmpfs is refused and changes nothing.
        pre = f"{TMPFS}/pre.diff"
        c.call("snapshot-create", name="pre", origins=["a"], storage=[{"path": pre, "size": MiB}])
        try:
            with open(f"{TMPFS}/filler", "wb") as f:
                while True:
                    f.write(bytes(65536))
                    f.flush()
        except OSError:
            pass
        reply = c.reply("snapshot-append-storage", name="pre", path=f"{TMPFS}/more.diff", size=2 * MiB)
        if reply.get("ok"):
            fail(f"append on a full tmpfs succeeded: {reply}")
        print(f"  append on the full tmpfs: {reply}", flush=True)
        if os.path.exists(f"{TMPFS}/more.diff"):
            fail("a refused append left its file behind")
        if c.snapshot_info("pre")["storage_total"] != MiB:
            fail(f"a refused append changed the storage: {c.snapshot_info('pre')}")
        c.call("snapshot-take", name="pre")
        overflow_case("pre", "a", 0x43, 4 * MiB)
        c.call("snapshot-destroy", name="pre")
        if os.path.exists(pre):
            fail("pre: destroy left the storage file it created")
        os.unlink(f"{TMPFS}/filler")
        if os.listdir(TMPFS):
            fail(f"files left on the tmpfs: {os.listdir(TMPFS)}")
        ok("full tmpfs: preallocated storage overflows cleanly, append refused, storage removed")
        for o in "ab":
            write_pattern(h[o], 0x11, 0, SIZE)

    other.shutdown()
    c.call("snapshot-destroy", name="other")
    if os.path.exists(f"{DIR}/other.diff"):
        fail("other: destroy left its storage file")
    ok(f"storage exhaustion, {ROUNDS} round(s)")


main_wrapper(main)
