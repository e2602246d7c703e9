#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-incremental-forever.sh — 1,000 takes in a row on one origin, each followed by `nbdsnap backup --since`
# the previous take: every backup equals its image, none after the first is full, the CBT generation stays
# through the compactions of the 8-bit change number (incremental_forever.py drives the rounds).
# Usage: test-cli-incremental-forever.sh NBDSNAP nbdsnapd NBDSNAPD [ROUNDS]
#        test-cli-incremental-forever.sh NBDSNAP filter FILTER.so [ROUNDS]
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
use_front_end "$2" "$3"
front_end=$FRONT_END
rounds=${4:-1000}

disk=$dir/disk.img
truncate -s 4M "$disk"  # 64 tracking blocks of 64 KiB
if [[ $front_end == nbdsnapd ]]; then
  kept=16  # the default
  start_nbdsnapd --origin "disk=$disk"
  origin=disk ranges=dirty-bitmap storage=(8388608)
else
  kept=2  # the smallest: a compaction every 254 takes keeps only the previous checkpoint's meaning
  mkdir "$dir/state" "$dir/diffs"
  start_filter file "$disk" nbdsnap-state-dir="$dir/state" nbdsnap-storage="$dir/diffs:8M" \
    nbdsnap-checkpoints-kept=$kept
  origin=default ranges=cbt-map storage=()
fi
/usr/bin/python3 "$(dirname "$0")/incremental_forever.py" "$NBDSNAP" "$sock" "$NBDSNAP_CONTROL" "$origin" "$dir" \
  "$rounds" "$kept" "$ranges" "${storage[@]}" || fail "incremental forever through $front_end"
pass "incremental forever through $front_end"
