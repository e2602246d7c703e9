#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-tracked-paths-filter.sh — tracked_paths.py against nbdkit + the nbdsnap filter over the file plugin:
# writer and slow-handshake clients race origin-detach (with and without force), takes and destroys; the
# origin comes back when a client opens it; no write may reach the disk untracked (issue 14).
# Usage: test-tracked-paths-filter.sh FILTER.so [--duration SECONDS] [--seed N]
FILTER=${1:?usage: $0 FILTER.so [options]}; shift
source "$(dirname "$0")/lib.sh"
mkdir "$dir/state" "$dir/storage"
truncate -s 8M "$dir/disk.img"
NBDKIT_VERBOSE= start_nbdkit tracked --threads 16 file "$dir/disk.img" nbdsnap-state-dir="$dir/state" \
  nbdsnap-chunk-min-shift=16
"$PY" "$here/tracked_paths.py" --nbd "$sock" --control "$ctl" --origin default --file "$dir/disk.img" \
  --storage-dir "$dir/storage" "$@"
server_alive || fail "nbdkit died"
pass "no untracked write through the nbdkit filter"
