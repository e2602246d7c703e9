#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-io-threads.sh — nbdsnapd --io-threads 3 deals its connections out to three I/O threads: six clients
# connected at once (two origins) write and read back their own data, every I/O thread spends CPU serving
# them (one thread for every socket was the limit with dozens of busy connections, bench T8), and SIGTERM
# with connections open on every thread still stops nbdsnapd cleanly within 5 s.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 32M "$dir/a.raw" "$dir/b.raw"
start_nbdsnapd --io-threads 3 --origin "a=$dir/a.raw" --origin "b=$dir/b.raw"

# The threads run() starts besides its own (which serves no connection), named so that top -H and this test
# can tell them.
io_threads=()
for task in /proc/"$server_pid"/task/*; do
  [[ $(cat "$task/comm") == nbdsnapd-io ]] && io_threads+=("$task")
done
((${#io_threads[@]} == 3)) || fail "expected 3 threads named nbdsnapd-io besides the main one, found ${#io_threads[@]}"
# CPU time of a thread so far, in nanoseconds (schedstat's first field).
cpu_ns() { cut -d' ' -f1 "$1/schedstat"; }
declare -A before
for task in "${io_threads[@]}"; do before[$task]=$(cpu_ns "$task"); done

# Six connections opened one after another (so each thread gets two), all held open; 400 writes of 4 KiB on
# each, in turn, then each reads its own data back. Stays connected until $dir/stop appears (bounded).
cat >"$dir/clients.py" <<'EOF'
import os, sys, time
import nbd
sock, ready, stop = sys.argv[1:4]
handles = []
for i in range(6):
    h = nbd.NBD()
    h.connect_uri(f"nbd+unix:///{'ab'[i % 2]}?socket={sock}")
    handles.append(h)
for n in range(400):
    for i, h in enumerate(handles):
        h.pwrite(bytes([i + 1]) * 4096, (i // 2) * (8 << 20) + (n % 256) * 4096)
for i, h in enumerate(handles):
    data = h.pread(256 * 4096, (i // 2) * (8 << 20))
    if data != bytes([i + 1]) * (256 * 4096):
        sys.exit(f"connection {i}: read back other data than it wrote")
open(ready, "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(stop) and time.monotonic() < deadline:
    time.sleep(0.01)
EOF
"$PY" "$dir/clients.py" "$sock" "$dir/ready" "$dir/stop" >"$dir/clients.out" 2>&1 &
clients=$!
track_pid "$clients"
for ((i = 0; i < 6000; i++)); do
  [[ -e $dir/ready ]] && break
  kill -0 "$clients" 2>/dev/null || break
  sleep 0.01
done
[[ -e $dir/ready ]] || fail "the clients did not finish their writes: $(cat "$dir/clients.out")"
pass "six connections on three I/O threads wrote and read back their own data"

# Every I/O thread served its share: each used at least 1 ms of CPU more than when it was idle.
for task in "${io_threads[@]}"; do
  used=$(($(cpu_ns "$task") - before[$task]))
  ((used >= 1000000)) || fail "I/O thread ${task##*/} used ${used} ns of CPU: its connections were served elsewhere"
done
pass "every I/O thread served connections"

stop_server_timed
touch "$dir/stop"
wait "$clients" 2>/dev/null || true
((server_status == 0)) || fail "nbdsnapd exited $server_status on SIGTERM with clients on every I/O thread"
((stop_ms <= 5000)) || fail "nbdsnapd took $stop_ms ms to stop"
cbt_state_is_clean a || fail "CBT state of a not saved as clean"
cbt_state_is_clean b || fail "CBT state of b not saved as clean"
echo PASS
