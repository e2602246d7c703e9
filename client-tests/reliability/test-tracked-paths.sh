#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-tracked-paths.sh — tracked_paths.py against nbdsnapd or nbdkit + the nbdsnap filter over the file plugin:
# writer and slow-handshake clients race origin-attach (nbdsnapd only), origin-detach (with and without force),
# takes and destroys; through the filter the origin comes back when a client opens it; no write may reach the
# disk untracked (issue 14).
# Usage: test-tracked-paths.sh nbdsnapd|filter NBDSNAPD|FILTER.so [--duration SECONDS] [--seed N]
source "$(dirname "$0")/../functions.sh"
use_front_end "${1:?usage: $0 nbdsnapd|filter BINARY [options]}" "${2:-}"
shift 2
mkdir "$dir/state" "$dir/storage"
truncate -s 8M "$dir/disk.img"
if [[ $FRONT_END == nbdsnapd ]]; then
  start_nbdsnapd --log tracked --state-dir "$dir/state" --chunk-min-shift 16 --origin "disk=$dir/disk.img"
  origin=disk extra=(--attach)
else
  NBDKIT_VERBOSE= start_filter --log tracked --threads 16 file "$dir/disk.img" nbdsnap-state-dir="$dir/state" \
    nbdsnap-chunk-min-shift=16
  origin=default extra=()
fi
"$PY" "$here/tracked_paths.py" --nbd "$sock" --control "$ctl" --origin "$origin" --file "$dir/disk.img" \
  --storage-dir "$dir/storage" "${extra[@]}" "$@"
server_alive || fail "$FRONT_END died"
pass "no untracked write through $FRONT_END"
