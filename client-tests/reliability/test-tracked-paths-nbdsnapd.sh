#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-tracked-paths-nbdsnapd.sh — tracked_paths.py against nbdsnapd: writer and slow-handshake clients race
# origin-attach, origin-detach (with and without force), takes and destroys; no write may reach the disk
# untracked (issue 14).
# Usage: test-tracked-paths-nbdsnapd.sh NBDSNAPD [--duration SECONDS] [--seed N]
NBDSNAPD=${1:?usage: $0 NBDSNAPD [options]}; shift
source "$(dirname "$0")/lib.sh"
mkdir "$dir/state" "$dir/storage"
truncate -s 8M "$dir/disk.img"
start_nbdsnapd tracked --state-dir "$dir/state" --chunk-min-shift 16 --origin "disk=$dir/disk.img"
"$PY" "$here/tracked_paths.py" --nbd "$sock" --control "$ctl" --origin disk --file "$dir/disk.img" \
  --storage-dir "$dir/storage" --attach "$@"
server_alive || fail "nbdsnapd died"
pass "no untracked write through nbdsnapd"
