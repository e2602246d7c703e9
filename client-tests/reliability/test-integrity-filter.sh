#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-integrity-filter.sh — integrity soak (integrity_soak.py) against nbdkit + the nbdsnap filter over the
# file plugin in dir= mode: three origins in two snapshot groups, two writers per origin, >= 20 takes.
# Usage: test-integrity-filter.sh FILTER.so [--takes N] [--duration SECONDS] [--rounds N] [soak options...]
FILTER=${1:?usage: $0 FILTER.so [options]}; shift
source "$(dirname "$0")/lib.sh"
args=()
while (($#)); do
  case $1 in --rounds) args+=(--takes "$2"); shift 2 ;; *) args+=("$1"); shift ;; esac
done
size=${SOAK_ORIGIN_SIZE:-8M}
mkdir "$dir/disks" "$dir/state" "$dir/storage"
for o in a b c; do truncate -s "$size" "$dir/disks/$o"; done
NBDKIT_VERBOSE= start_nbdkit soak --threads 16 file dir="$dir/disks" nbdsnap-state-dir="$dir/state" nbdsnap-chunk-min-shift=16
"$PY" "$here/integrity_soak.py" --nbd "$sock" --control "$ctl" --storage-dir "$dir/storage" \
  --origins a,b,c --groups 'a,b;c' --takes 20 "${args[@]}"
server_alive || fail "nbdkit died"
pass "integrity soak against nbdkit + filter"
