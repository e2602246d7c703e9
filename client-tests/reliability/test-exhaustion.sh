#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-exhaustion.sh — difference storage runs out or fails (exhaustion.py), against nbdsnapd or nbdkit + the
# nbdsnap filter (file plugin, dir= mode); invariant 2: the snapshot turns corrupted (event, image reads fail)
# while every origin write succeeds and reads back, the server stays up, another snapshot is unaffected, and
# destroy removes the storage files the engine created.
#   1. limit: a storage limit of 3 chunks, 4 MiB written.
#   2. ENOSPC: a sparse user-provided storage file (size 0 = its existing 8 MiB) on a 4 MiB tmpfs.
#   3. tmpfs filled by others: engine-created storage (preallocated) on a tmpfs then filled by a filler file;
#      appending storage there is refused (no_space, nothing changes, no partial file left).
# Usage: test-exhaustion.sh nbdsnapd|filter NBDSNAPD|FILTER.so [--rounds N]   (long mode: N rounds of all cases)
source "$(dirname "$0")/../functions.sh"
use_front_end "${1:?usage: $0 nbdsnapd|filter BINARY [--rounds N]}" "${2:-}"
shift 2
parse_rounds 1 "$@"

mkdir "$dir/state" "$dir/disks"
for o in a b c; do "$PY" -c "import sys; open(sys.argv[1], 'wb').write(b'\\x11' * 16777216)" "$dir/disks/$o"; done
mount_tmpfs "$dir/t" 4M
if [[ $FRONT_END == nbdsnapd ]]; then
  start_nbdsnapd --log exhaustion --state-dir "$dir/state" --chunk-min-shift 16 \
    --origin "a=$dir/disks/a" --origin "b=$dir/disks/b" --origin "c=$dir/disks/c"
else
  start_filter --log exhaustion --threads 8 file dir="$dir/disks" nbdsnap-state-dir="$dir/state" \
    nbdsnap-chunk-min-shift=16
fi

"$PY" "$here/exhaustion.py" "$sock" "$ctl" "$dir" "$dir/t" "$rounds"
server_alive || fail "$FRONT_END died"
stop_server TERM
((server_status == 0)) || fail "$FRONT_END did not stop cleanly ($server_status)"
pass "storage exhaustion through $FRONT_END, $rounds round(s)"
