#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-integrity.sh — integrity soak (integrity_soak.py) against nbdsnapd or nbdkit + the nbdsnap filter over the
# file plugin in dir= mode: three origins in two snapshot groups, two writers per origin, >= 20 takes in short
# mode.
# Usage: test-integrity.sh nbdsnapd|filter NBDSNAPD|FILTER.so [--takes N] [--duration SECONDS] [--rounds N]
#        [soak options...]
source "$(dirname "$0")/../functions.sh"
use_front_end "${1:?usage: $0 nbdsnapd|filter BINARY [options]}" "${2:-}"
shift 2
args=()
while (($#)); do
  case $1 in --rounds) args+=(--takes "$2"); shift 2 ;; *) args+=("$1"); shift ;; esac
done
size=${SOAK_ORIGIN_SIZE:-8M}
mkdir "$dir/disks" "$dir/state" "$dir/storage"
for o in a b c; do truncate -s "$size" "$dir/disks/$o"; done
if [[ $FRONT_END == nbdsnapd ]]; then
  start_nbdsnapd --log soak --state-dir "$dir/state" --chunk-min-shift 16 \
    --origin "a=$dir/disks/a" --origin "b=$dir/disks/b" --origin "c=$dir/disks/c"
else
  NBDKIT_VERBOSE= start_filter --log soak --threads 16 file dir="$dir/disks" nbdsnap-state-dir="$dir/state" \
    nbdsnap-chunk-min-shift=16
fi
"$PY" "$here/integrity_soak.py" --nbd "$sock" --control "$ctl" --storage-dir "$dir/storage" \
  --origins a,b,c --groups 'a,b;c' --takes 20 "${args[@]}"
server_alive || fail "$FRONT_END died"
if [[ $FRONT_END == nbdsnapd ]]; then  # nbdkit's stop is left to the harness (as before the merge)
  stop_server TERM
  ((server_status == 0)) || fail "nbdsnapd did not stop cleanly ($server_status)"
fi
pass "integrity soak against $FRONT_END"
