#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# run-libnbd-client-test.sh NBDSNAPD TEST-PROGRAM — runs the libnbd client test program against a private
# nbdsnapd serving origins "disk" (64 MiB) and "list" (16 MiB).
source "$(dirname "$0")/common.sh"
program=${2:?usage: $0 NBDSNAPD TEST-PROGRAM}

truncate -s 64M "$tmp/disk.raw"
truncate -s 16M "$tmp/list.raw"
start_nbdsnapd --origin "disk=$tmp/disk.raw" --origin "list=$tmp/list.raw"
NBDSNAP_SOCKET=$sock NBDSNAP_CONTROL=$ctl NBDSNAP_TMP=$tmp "$program" || fail "libnbd client tests failed"
stop_nbdsnapd TERM
((stopped_status == 0)) || fail "nbdsnapd did not exit 0"
echo PASS
