#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-bad-clients.sh — garbage bytes, oversized requests, unknown options and forbidden writes are refused
# (error replies or a dropped connection) while a concurrent well-behaved client keeps working.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 64M "$dir/disk.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw"
snapshot s1 disk
/usr/bin/python3 "$here/bad_clients.py" "$sock" disk disk@s1 || fail "bad clients were not handled"
kill -0 "$server_pid" || fail "nbdsnapd died"
qemu-io -f raw -r -c 'read 0 64k' "$(uri disk)" >/dev/null || fail "nbdsnapd no longer serves"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0"
echo PASS
