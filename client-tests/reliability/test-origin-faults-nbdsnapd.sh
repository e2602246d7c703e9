#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-origin-faults-nbdsnapd.sh — a failing origin device under nbdsnapd without dm or loop devices: the origin
# is a sparse file on a tmpfs that fills up (origin_enospc.py). nbdsnapd has no fault-injection hook, so a
# failing copy-on-write *read* (EIO from the device) cannot be produced here; the filter test covers that path
# of the shared engine (test-origin-faults-filter.sh).
# Usage: test-origin-faults-nbdsnapd.sh NBDSNAPD [--rounds N]
NBDSNAPD=${1:?usage: $0 NBDSNAPD [--rounds N]}; shift
source "$(dirname "$0")/../functions.sh"
parse_rounds 1 "$@"
mkdir "$dir/state"
mount_tmpfs "$dir/t" 6M
truncate -s 16M "$dir/t/a.raw"
start_nbdsnapd --log faults --state-dir "$dir/state" --origin "a=$dir/t/a.raw"
"$PY" "$here/origin_enospc.py" "$sock" "$ctl" "$dir" "$dir/t/filler" "$rounds"
server_alive || fail "nbdsnapd died"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not stop cleanly ($server_status)"
pass "origin ENOSPC under nbdsnapd, $rounds round(s)"
