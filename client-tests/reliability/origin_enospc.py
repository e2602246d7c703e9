#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""origin_enospc.py — nbdsnapd's origin is a sparse file on a full tmpfs: writes into holes fail (ENOSPC).

Usage: origin_enospc.py NBD_SOCK CONTROL_SOCK DIR FILLER ROUNDS
Origin "a" (16 MiB, sparse) has its first 2 MiB allocated with 0x11; the rest is a hole (zeroes). The tmpfs
under it is then filled (FILLER). A write into the hole must fail with an error the client sees; a write to
the allocated part must succeed; the snapshot stays consistent (its image shows take-time data everywhere)
and nbdsnapd stays up; once space is freed the same write succeeds.
"""
import os
import sys

import nbd

from reltools import MiB, connect, check_pattern, fail, ok, main_wrapper
import nbdsnap

SOCK, CTL, DIR, FILLER, ROUNDS = sys.argv[1:5] + [int(sys.argv[5])]


def fill(path):
    try:
        with open(path, "wb") as f:
            while True:
                f.write(bytes(65536))
                f.flush()
    except OSError:
        pass


def main():
    c = nbdsnap.Client(CTL)
    h = connect(SOCK, "a")
    for rnd in range(1, ROUNDS + 1):
        h.pwrite(b"\x11" * 2 * MiB, 0)
        h.trim(14 * MiB, 2 * MiB)   # punch the rest back into a hole (previous round wrote there)
        h.flush()
        name = f"s{rnd}"
        c.call("snapshot-create", name=name, origins=["a"], storage=[{"path": f"{DIR}/{name}.diff", "size": 32 * MiB}])
        c.call("snapshot-take", name=name)
        fill(FILLER)
        try:
            h.pwrite(b"\x77" * MiB, 8 * MiB + 512)
            fail("a write into a hole of an origin on a full file system succeeded")
        except nbd.Error as e:
            print(f"  write into a hole on the full tmpfs: {e}", flush=True)
        h.pwrite(b"\x22" * MiB, 512)  # allocated: must work
        check_pattern(h, 0x22, 512, MiB, "origin write to allocated blocks on the full tmpfs")
        img = connect(SOCK, f"a@{name}")
        check_pattern(img, 0x11, 0, 2 * MiB, f"image a@{name} (allocated part)")
        check_pattern(img, 0x00, 2 * MiB, 14 * MiB, f"image a@{name} (hole)")
        info = c.snapshot_info(name)
        if info["state"] != "taken":
            fail(f"{name}: origin ENOSPC changed the snapshot: {info}")
        os.unlink(FILLER)
        h.pwrite(b"\x77" * MiB, 8 * MiB + 512)
        check_pattern(h, 0x77, 8 * MiB + 512, MiB, "origin write after space was freed")
        check_pattern(img, 0x00, 2 * MiB, 14 * MiB, f"image a@{name} (hole) after the retry")
        img.shutdown()
        c.call("snapshot-destroy", name=name)
        ok(f"round {rnd}: origin ENOSPC reached the client, the snapshot stayed consistent, retry worked")


main_wrapper(main)
