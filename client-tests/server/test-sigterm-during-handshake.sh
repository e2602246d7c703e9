#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-sigterm-during-handshake.sh — a client still negotiating options when SIGTERM arrives (libnbd in opt
# mode) gets NBD_REP_ERR_SHUTDOWN for its next option, as the NBD spec asks a server that is shutting down,
# instead of a connection closed under it; nbdsnapd still stops within 2 s (the test fails above 5 s).
source "$(dirname "$0")/common.sh"

truncate -s 16M "$tmp/disk.raw"
start_nbdsnapd --origin "disk=$tmp/disk.raw"

start=$(date +%s%N)
/usr/bin/python3 "$here/shutdown_clients.py" opt-mode "$sock" "$(cat "$pidfile")" >"$tmp/client.out" 2>&1 ||
  fail "the opt-mode client failed: $(cat "$tmp/client.out")"
await_nbdsnapd_exit "$start"
echo "libnbd reports:"; cat "$tmp/client.out"; echo "nbdsnapd stopped $stop_ms ms after SIGTERM"
((stopped_status == 0)) || fail "nbdsnapd exited $stopped_status"
((stop_ms <= 5000)) || fail "nbdsnapd took $stop_ms ms to stop"
# libnbd 1.14 decodes ERR_SHUTDOWN for GO (errno ESHUTDOWN); for LIST it says only "unexpected response"
# (ENOTSUP) and logs the server's message. A connection closed under the client reads EPIPE or a disconnect.
grep -q '^opt_go: .*(errno ESHUTDOWN)' "$tmp/client.out" || fail "opt_go did not see the shutdown error"
grep -q '^opt_list: .*(errno ENOTSUP)' "$tmp/client.out" || fail "opt_list did not see an error reply"
[[ $(grep -c '^debug: .*the server is shutting down' "$tmp/client.out") == 2 ]] ||
  fail "libnbd did not receive the server's shutdown message on both connections"
cbt_state_is_clean disk || fail "CBT state not saved as clean"
echo PASS
