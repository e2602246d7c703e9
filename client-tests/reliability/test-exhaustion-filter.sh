#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-exhaustion-filter.sh — the storage exhaustion cases of exhaustion.py (limit, ENOSPC on a tmpfs, full
# tmpfs) against nbdkit + the nbdsnap filter (file plugin, dir= mode).
# Usage: test-exhaustion-filter.sh FILTER.so [--rounds N]
FILTER=${1:?usage: $0 FILTER.so [--rounds N]}; shift
source "$(dirname "$0")/lib.sh"
rounds=1
while (($#)); do case $1 in --rounds) rounds=$2; shift 2 ;; --duration) shift 2 ;; *) fail "unknown option $1" ;; esac; done
mkdir "$dir/state" "$dir/disks"
for o in a b c; do "$PY" -c "import sys; open(sys.argv[1], 'wb').write(b'\\x11' * 16777216)" "$dir/disks/$o"; done
mount_tmpfs "$dir/t" 4M
start_nbdkit exhaustion --threads 8 file dir="$dir/disks" nbdsnap-state-dir="$dir/state" nbdsnap-chunk-min-shift=16
"$PY" "$here/exhaustion.py" "$sock" "$ctl" "$dir" "$dir/t" "$rounds"
server_alive || fail "nbdkit died"
kill_server TERM
pass "storage exhaustion through the filter, $rounds round(s)"
