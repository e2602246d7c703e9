#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-sigterm-with-control-waiters.sh — control clients in events-wait cannot hold up SIGTERM: one that has a
# second long events-wait queued behind the first, and others that connect and wait right after the signal
# (while an NBD client stuck in its handshake keeps the NBD side busy).
# nbdsnapd exits 0 within 2 s (the test fails above 5 s, for loaded machines and sanitizers) with CBT saved
# as cleanly stopped.
source "$(dirname "$0")/common.sh"

truncate -s 16M "$tmp/disk.raw"
start_nbdsnapd --origin "disk=$tmp/disk.raw"
helper=$here/shutdown_clients.py

/usr/bin/python3 "$helper" idle-handshake "$sock" &
idle=$!
/usr/bin/python3 "$helper" control-waiter "$ctl" "$tmp/waiter.ready" >"$tmp/waiter.out" 2>&1 &
waiter=$!
for ((i = 0; i < 300; i++)); do [[ -e $tmp/waiter.ready ]] && break; sleep 0.01; done
[[ -e $tmp/waiter.ready ]] || fail "the control waiter did not start"
sleep 0.2  # its first events-wait is blocked on the server

start=$(date +%s%N)
kill -TERM "$(cat "$pidfile")"
/usr/bin/python3 "$helper" control-latecomer "$ctl" >"$tmp/latecomer.out" 2>&1 &
latecomer=$!
await_nbdsnapd_exit "$start"
wait "$waiter" || true
wait "$latecomer" || true
kill "$idle" 2>/dev/null || true
echo "nbdsnapd stopped $stop_ms ms after SIGTERM; $(cat "$tmp/waiter.out"); $(cat "$tmp/latecomer.out")"
((stopped_status == 0)) || fail "nbdsnapd exited $stopped_status"
((stop_ms <= 5000)) || fail "nbdsnapd took $stop_ms ms to stop (control clients held it up)"
cbt_state_is_clean disk || fail "CBT state not saved as clean"
echo PASS
