#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-sigterm-events-wait.sh — control clients in events-wait do not hold up nbdkit's stop: one that has a
# second long events-wait queued behind the first, and others that connect and wait while nbdkit stops.
# nbdkit exits within 2 s of SIGTERM (the test fails above 5 s) and the filter saves CBT as cleanly stopped.
# Usage: test-sigterm-events-wait.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

mkdir -p "$dir/state"
start_filter --log sigterm memory size=16M nbdsnap-default-origin=ram nbdsnap-state-dir="$dir/state"
qemu-io -f raw -c 'write -P 0x5a 0 64k' "$(uri '')" >/dev/null  # attaches the origin: it has CBT state

# waiter SOCKET READY: two events-wait requests of 60 s in one write, then reads until the server closes.
"$PY" - "$ctl" "$dir/waiter.ready" >"$dir/waiter.out" 2>&1 <<'PY' &
import json, socket, sys
line = json.dumps({"command": "events-wait", "after": 1 << 40, "timeout_ms": 60000}).encode() + b"\n"
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.settimeout(90)
    s.connect(sys.argv[1])
    s.sendall(line + line)
    open(sys.argv[2], "w").close()
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
PY
waiter=$!
track_pid "$waiter"
for _ in $(seq 300); do [[ -e $dir/waiter.ready ]] && break; sleep 0.01; done
[[ -e $dir/waiter.ready ]] || fail "the control waiter did not start"
sleep 0.2  # its first events-wait is blocked in the filter

# latecomers: connect and wait again and again until the control socket is gone (at most 10 s).
"$PY" - "$ctl" >"$dir/latecomer.out" 2>&1 <<'PY' &
import json, socket, sys, time
line = json.dumps({"command": "events-wait", "after": 1 << 40, "timeout_ms": 60000}).encode() + b"\n"
held, deadline = [], time.monotonic() + 10
while time.monotonic() < deadline:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sys.argv[1])
        s.sendall(line)
    except OSError:
        break
    held.append(s)
    time.sleep(0.005)
print(f"{len(held)} events-wait requests sent")
PY
latecomer=$!
track_pid "$latecomer"

stopped() { ! kill -0 "$server_pid" 2>/dev/null; }
start=$(date +%s%N)
kill -TERM "$server_pid"
while ! stopped && (($(date +%s%N) - start < 30000000000)); do sleep 0.01; done
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
stopped || fail "nbdkit still runs 30 s after SIGTERM"
wait "$waiter" "$latecomer" 2>/dev/null || true
echo "nbdkit stopped $elapsed_ms ms after SIGTERM; latecomers: $(cat "$dir/latecomer.out")"
((elapsed_ms <= 5000)) || fail "nbdkit took $elapsed_ms ms to stop (control clients held it up)"
grep -q "nbdsnap: unloaded, CBT state saved" "$server_log" || fail "the filter did not save CBT state"
cbt_file_is_clean ram ||
  fail "CBT state not saved as clean"
pass "SIGTERM with control clients in events-wait: nbdkit stopped in $elapsed_ms ms, CBT saved clean"
