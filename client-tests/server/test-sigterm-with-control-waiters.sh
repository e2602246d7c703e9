#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-sigterm-with-control-waiters.sh — control clients in events-wait cannot hold up SIGTERM: one that has a
# second long events-wait queued behind the first, and others that connect and wait right after the signal
# (while an NBD client stuck in its handshake keeps the NBD side busy).
# nbdsnapd exits 0 within 2 s (the test fails above 5 s, for loaded machines and sanitizers) with CBT saved
# as cleanly stopped.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 16M "$dir/disk.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw"
helper=$here/shutdown_clients.py

/usr/bin/python3 "$helper" idle-handshake "$sock" &
idle=$!
/usr/bin/python3 "$helper" control-waiter "$ctl" "$dir/waiter.ready" >"$dir/waiter.out" 2>&1 &
waiter=$!
for ((i = 0; i < 300; i++)); do [[ -e $dir/waiter.ready ]] && break; sleep 0.01; done
[[ -e $dir/waiter.ready ]] || fail "the control waiter did not start"
sleep 0.2  # its first events-wait is blocked on the server

start=$(date +%s%N)
kill -TERM "$server_pid"
/usr/bin/python3 "$helper" control-latecomer "$ctl" >"$dir/latecomer.out" 2>&1 &
latecomer=$!
await_server_exit "$start"
wait "$waiter" || true
wait "$latecomer" || true
kill "$idle" 2>/dev/null || true
echo "nbdsnapd stopped $stop_ms ms after SIGTERM; $(cat "$dir/waiter.out"); $(cat "$dir/latecomer.out")"
((server_status == 0)) || fail "nbdsnapd exited $server_status"
((stop_ms <= 5000)) || fail "nbdsnapd took $stop_ms ms to stop (control clients held it up)"
cbt_state_is_clean disk || fail "CBT state not saved as clean"
echo PASS
