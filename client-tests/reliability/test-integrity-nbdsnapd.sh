#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-integrity-nbdsnapd.sh — integrity soak (integrity_soak.py) against nbdsnapd: three origins in two
# snapshot groups, two writers per origin, >= 20 takes in short mode.
# Usage: test-integrity-nbdsnapd.sh NBDSNAPD [--takes N] [--duration SECONDS] [--rounds N] [soak options...]
NBDSNAPD=${1:?usage: $0 NBDSNAPD [options]}; shift
source "$(dirname "$0")/lib.sh"
args=()
while (($#)); do
  case $1 in --rounds) args+=(--takes "$2"); shift 2 ;; *) args+=("$1"); shift ;; esac
done
size=${SOAK_ORIGIN_SIZE:-8M}
mkdir "$dir/state" "$dir/storage"
for o in a b c; do truncate -s "$size" "$dir/$o.raw"; done
start_nbdsnapd soak --state-dir "$dir/state" --chunk-min-shift 16 \
  --origin "a=$dir/a.raw" --origin "b=$dir/b.raw" --origin "c=$dir/c.raw"
"$PY" "$here/integrity_soak.py" --nbd "$sock" --control "$ctl" --storage-dir "$dir/storage" \
  --origins a,b,c --groups 'a,b;c' --takes 20 "${args[@]}"
server_alive || fail "nbdsnapd died"
kill_server TERM
((server_status == 0)) || fail "nbdsnapd did not stop cleanly ($server_status)"
pass "integrity soak against nbdsnapd"
