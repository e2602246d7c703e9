#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-sigterm-with-client-not-reading.sh — an NBD client that sends many READs and never reads the replies
# cannot hold up SIGTERM: nbdsnapd gives it a bounded time, exits 0 within 2 s (the test fails above 5 s)
# and saves CBT as cleanly stopped.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 64M "$dir/disk.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw"

/usr/bin/python3 "$here/shutdown_clients.py" not-reading "$sock" disk "$dir/client.ready" >"$dir/client.out" 2>&1 &
client=$!
for ((i = 0; i < 1500; i++)); do [[ -e $dir/client.ready ]] && break; sleep 0.01; done
[[ -e $dir/client.ready ]] || fail "the client did not fill the connection: $(cat "$dir/client.out")"
stop_server_timed
kill "$client" 2>/dev/null || true
wait "$client" 2>/dev/null || true
echo "nbdsnapd stopped $stop_ms ms after SIGTERM"
((server_status == 0)) || fail "nbdsnapd exited $server_status"
((stop_ms <= 5000)) || fail "nbdsnapd took $stop_ms ms to stop (a client that does not read held it up)"
cbt_state_is_clean disk || fail "CBT state not saved as clean"
echo PASS
