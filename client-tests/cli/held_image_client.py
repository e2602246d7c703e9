#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""held_image_client.py — an NBD client (libnbd) that holds a snapshot image open while a test acts.

Usage: held_image_client.py URI READY-FILE GO-FIFO
Connects to URI, reads 64 KiB at offset 0 and remembers them, creates READY-FILE, then waits (at most 60 s)
for a line on GO-FIFO. Then reads the same 64 KiB again and prints one line: "same data" when the read returns
what the first one did, "other data" when it returns different bytes (what must never happen), or
"read failed: errno N: ERROR" when it fails. Every wait is bounded: libnbd's own connect, the FIFO's 60 s.
"""
import os
import select
import sys

import nbd

URI, READY, GO = sys.argv[1:4]

handle = nbd.NBD()
handle.connect_uri(URI)
first = handle.pread(65536, 0)
fifo = os.open(GO, os.O_RDONLY | os.O_NONBLOCK)
with open(READY, "w") as ready:
    ready.write("ready\n")
readable, _, _ = select.select([fifo], [], [], 60)
if not readable:
    print("no go within 60 s")
    sys.exit(1)
try:
    again = handle.pread(65536, 0)
    print("same data" if again == first else "other data")
except nbd.Error as error:
    print(f"read failed: errno {error.errnum}: {error.string}")
