#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-origin-faults-filter.sh — nbdkit's error filter under ours fails origin reads/writes on demand (see
# origin_faults.py): write errors reach the client as EIO without touching the snapshot; copy-on-write read
# failures corrupt the snapshot and never make an image return wrong bytes.
# Usage: test-origin-faults-filter.sh FILTER.so [--rounds N]
FILTER=${1:?usage: $0 FILTER.so [--rounds N]}; shift
source "$(dirname "$0")/../functions.sh"
parse_rounds 1 "$@"
mkdir "$dir/disks" "$dir/state"
truncate -s 16M "$dir/disks/a"
start_filter --log faults --threads 8 --filter=error file dir="$dir/disks" nbdsnap-state-dir="$dir/state" \
  error-pread-rate=1 error-pread-file="$dir/pread-inject" error-pwrite-rate=1 error-pwrite-file="$dir/pwrite-inject"
"$PY" "$here/origin_faults.py" "$sock" "$ctl" "$dir" "$dir/pread-inject" "$dir/pwrite-inject" "$rounds"
server_alive || fail "nbdkit died"
stop_server TERM
pass "origin faults through nbdkit's error filter, $rounds round(s)"
