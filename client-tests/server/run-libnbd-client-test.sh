#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# run-libnbd-client-test.sh NBDSNAPD TEST-PROGRAM — runs the libnbd client test program against a private
# nbdsnapd serving origins "disk" (64 MiB) and "list" (16 MiB).
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
program=${2:?usage: $0 NBDSNAPD TEST-PROGRAM}

truncate -s 64M "$dir/disk.raw"
truncate -s 16M "$dir/list.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw" --origin "list=$dir/list.raw"
NBDSNAP_SOCKET=$sock NBDSNAP_CONTROL=$ctl NBDSNAP_TMP=$dir "$program" || fail "libnbd client tests failed"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0"
echo PASS
