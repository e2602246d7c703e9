#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-exhaustion-nbdsnapd.sh — difference storage runs out or fails; invariant 2: the snapshot turns corrupted
# (event, image reads fail) while every origin write succeeds and reads back, nbdsnapd stays up, another
# snapshot is unaffected, and destroy removes the storage files the engine created.
#   1. limit: a storage limit of 3 chunks, 4 MiB written.
#   2. ENOSPC: a sparse user-provided storage file (size 0 = its existing 8 MiB) on a 4 MiB tmpfs.
#   3. tmpfs filled by others: engine-created storage (preallocated) on a tmpfs then filled by a filler file;
#      appending storage there is refused (no_space, nothing changes, no partial file left).
# Usage: test-exhaustion-nbdsnapd.sh NBDSNAPD [--rounds N]   (long mode: N rounds of all cases)
NBDSNAPD=${1:?usage: $0 NBDSNAPD [--rounds N]}; shift
source "$(dirname "$0")/lib.sh"
rounds=1
while (($#)); do case $1 in --rounds) rounds=$2; shift 2 ;; --duration) shift 2 ;; *) fail "unknown option $1" ;; esac; done

mkdir "$dir/state"
for o in a b c; do "$PY" -c "import sys; open(sys.argv[1], 'wb').write(b'\\x11' * 16777216)" "$dir/$o.raw"; done
mount_tmpfs "$dir/t" 4M
start_nbdsnapd exhaustion --state-dir "$dir/state" --chunk-min-shift 16 \
  --origin "a=$dir/a.raw" --origin "b=$dir/b.raw" --origin "c=$dir/c.raw"

"$PY" "$here/exhaustion.py" "$sock" "$ctl" "$dir" "$dir/t" "$rounds"
server_alive || fail "nbdsnapd died"
kill_server TERM
((server_status == 0)) || fail "nbdsnapd did not stop cleanly ($server_status)"
pass "storage exhaustion, $rounds round(s)"
