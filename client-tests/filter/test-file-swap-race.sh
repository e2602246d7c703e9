#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-file-swap-race.sh — an export of `file dir=` is the file the plugin opened, not only the file its path
# names when the filter looks. Another process swaps A.img and B.img (renameat2 RENAME_EXCHANGE) and back,
# and rotates them with plain renames (so that at moments A.img names no file), again and again, while
# clients connect to origin A.img: before the fix a connection now and then held B.img
# (the plugin opened it in the middle of a swap, the filter's check came after the swap back), so the origin's
# writes reached B.img untracked and its image read B's bytes (invariants 1 and 3). Every connection to A.img
# must read A's bytes or be refused. Probabilistic without the fix (a hit in 2-52 tries seen); never with it.
# Usage: test-file-swap-race.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

mkdir "$dir/d"
"$PY" -c 'import sys; open(sys.argv[1], "wb").write(b"\x11" * (1 << 20)); open(sys.argv[2], "wb").write(b"\x22" * (1 << 20))' \
  "$dir/d/A.img" "$dir/d/B.img"
start_filter --log race file dir="$dir/d" nbdsnap-state-dir="$dir/state"
ctl "{\"command\":\"snapshot-create\",\"name\":\"s\",\"origins\":[\"A.img\"],\"storage\":[{\"path\":\"$dir/s.diff\",\"size\":$((4 << 20))}]}" \
  '{"command":"snapshot-take","name":"s"}' >/dev/null || fail "take"

timeout 120 "$PY" - "$sock" "$dir/d" <<'PYEOF' || fail "a connection to A.img held another file"
import ctypes, multiprocessing, sys, time
import nbd
sock, d = sys.argv[1:3]
A, B = (d + "/A.img").encode(), (d + "/B.img").encode()

def swap(stop):
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    T = (d + "/T.img").encode()
    def rename(a, b, flags=0):
        if libc.renameat2(-100, a, -100, b, flags) != 0:  # AT_FDCWD
            raise OSError(ctypes.get_errno(), "renameat2")
    while not stop.is_set():
        # Atomic exchanges there and back, then plain renames, with moments where A.img names no file.
        rename(A, B, 2)  # RENAME_EXCHANGE
        rename(A, B, 2)
        for a, b in ((A, T), (B, A), (A, B), (T, A)):
            rename(a, b)

stop = multiprocessing.Event()
swapper = multiprocessing.Process(target=swap, args=(stop,))
swapper.start()
tries = refused = 0
wrong = []
deadline = time.monotonic() + 20
try:
    while time.monotonic() < deadline and tries < 4000 and not wrong:
        for export in ("A.img", "A.img@s"):
            tries += 1
            h = nbd.NBD()
            try:
                h.connect_uri(f"nbd+unix:///{export}?socket={sock}")
                first = h.pread(1, 0)[0]
            except nbd.Error:
                refused += 1  # refused at open, or the path named B.img then: both are fine
                continue
            if first != 0x11:
                wrong.append(f"{export} read {first:#x}")
            h.shutdown()
finally:
    stop.set()
    swapper.join()
print(f"{tries} connections, {refused} refused")
if wrong:
    sys.exit(f"after {tries} connections: " + "; ".join(wrong))
PYEOF
stop_server TERM
pass "no connection to origin A.img or its image held B.img while the two were swapped"
