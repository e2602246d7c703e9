#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-sigterm-during-handshake.sh — a client still negotiating options when SIGTERM arrives (libnbd in opt
# mode) gets NBD_REP_ERR_SHUTDOWN for its next option, as the NBD spec asks a server that is shutting down,
# instead of a connection closed under it; nbdsnapd still stops within 2 s (the test fails above 5 s).
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 16M "$dir/disk.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw"

start=$(date +%s%N)
/usr/bin/python3 "$here/shutdown_clients.py" opt-mode "$sock" "$server_pid" >"$dir/client.out" 2>&1 ||
  fail "the opt-mode client failed: $(cat "$dir/client.out")"
await_server_exit "$start"
echo "libnbd reports:"; cat "$dir/client.out"; echo "nbdsnapd stopped $stop_ms ms after SIGTERM"
((server_status == 0)) || fail "nbdsnapd exited $server_status"
((stop_ms <= 5000)) || fail "nbdsnapd took $stop_ms ms to stop"
# libnbd 1.14 decodes ERR_SHUTDOWN for GO (errno ESHUTDOWN); for LIST it says only "unexpected response"
# (ENOTSUP) and logs the server's message. A connection closed under the client reads EPIPE or a disconnect.
grep -q '^opt_go: .*(errno ESHUTDOWN)' "$dir/client.out" || fail "opt_go did not see the shutdown error"
grep -q '^opt_list: .*(errno ENOTSUP)' "$dir/client.out" || fail "opt_list did not see an error reply"
[[ $(grep -c '^debug: .*the server is shutting down' "$dir/client.out") == 2 ]] ||
  fail "libnbd did not receive the server's shutdown message on both connections"
cbt_state_is_clean disk || fail "CBT state not saved as clean"
echo PASS
