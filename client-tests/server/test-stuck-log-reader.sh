#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-stuck-log-reader.sh — nbdsnapd's stderr is a pipe whose reader stops (a stalled journal, `| less` left
# paused): once the pipe is full, every thread that logged used to block in fprintf, among them the threads
# serving NBD requests and control commands, so origin writes, takes and even the stop hung for as long as
# the reader did. Now (server/log.cpp) lines queue behind a writer thread:
# 1. with --log-level debug and the reader stopped, 300 connections fill the pipe (checked: FIONREAD);
# 2. then writes through the origin, a snapshot create/take/destroy, cbt-map, and more connections all
#    complete, each within 30 s (they take milliseconds);
# 3. the reader continues: the lines logged meanwhile arrive, whole;
# 4. a SIGTERM while the reader is stopped again ends nbdsnapd, exit 0, CBT saved clean;
# 5. the same with stderr a terminal nobody reads (a frozen ssh session): poll says a pty is writable while
#    it takes only part of a line, and a direct write then blocked the thread that logged, and the stop;
# 6. stderr closed (2>&-): the log lands nowhere, and never in the origin's disk image, which the first
#    open took as fd 2 before (every line written from byte 0, untracked).
# Usage: test-stuck-log-reader.sh NBDSNAPD
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
requires "$PY" -c 'import nbd'

truncate -s 16M "$dir/disk.img"
mkfifo "$dir/log.fifo"
server_log=$dir/nbdsnapd.log
cat "$dir/log.fifo" >"$server_log" &
reader_pid=$!
track_pid "$reader_pid"
mkdir -p "$state"
rm -f "$sock" "$ctl"
setsid "$NBDSNAPD" --listen "unix:$sock" --control "$ctl" --state-dir "$state" --threads 4 --log-level debug \
  --origin "disk=$dir/disk.img" </dev/null >"$dir/nbdsnapd.stdout" 2>"$dir/log.fifo" {_nap_fd}>&- &
server_pid=$!
echo "$server_pid" >"$dir/server.pid"
_await_ready

# pipe_bytes: what the log pipe holds unread (FIONREAD through a reader of our own, which reads nothing).
pipe_bytes() {
  "$PY" - "$dir/log.fifo" <<'EOF'
import array, fcntl, os, sys, termios
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
count = array.array("i", [0])
fcntl.ioctl(fd, termios.FIONREAD, count)
print(count[0])
EOF
}

# connections N: N libnbd connections in a row, each reading one block (a handful of debug lines each).
connections() {
  timeout 60 "$PY" - "$(uri disk)" "$1" <<'EOF' || fail "$1 connections did not complete within 60 s"
import nbd, sys
for _ in range(int(sys.argv[2])):
    h = nbd.NBD()
    h.connect_uri(sys.argv[1])
    h.pread(4096, 0)
    h.shutdown()
EOF
}

# 1. The reader stops; connections fill the pipe.
kill -STOP "$reader_pid"
connections 300
held=$(pipe_bytes)
((held >= 60000)) || fail "the log pipe holds only $held bytes: it never filled, the test proves nothing"
pass "reader stopped: 300 connections served, the log pipe is full ($held bytes unread)"

# 2. Everything still works, and fast.
step() { timeout 30 "$@" >"$dir/step.out" 2>&1 || fail "with the log reader stopped, '$*' failed or hung: $(cat "$dir/step.out")"; }
step qemu-io -f raw -c 'write -P 0xa1 0 1M' "$(uri disk)"
step "$PY" -m nbdsnap "$ctl" '{"command":"snapshot-create","name":"s","origins":["disk"],"storage":[{"path":"'"$dir"'/s.diff","size":8388608}]}' \
  '{"command":"snapshot-take","name":"s"}'
step qemu-io -f raw -c 'write -P 0xb2 0 2M' "$(uri disk)"
step qemu-io -f raw -r -c 'read -P 0xa1 0 1M' "$(image_uri disk s)"
step "$PY" -m nbdsnap "$ctl" '{"command":"cbt-map","origin":"disk","since":"s"}'
grep '"offset":0' "$dir/step.out" >/dev/null || fail "cbt-map since s misses the write: $(cat "$dir/step.out")"
step "$PY" -m nbdsnap "$ctl" '{"command":"snapshot-destroy","name":"s"}'
connections 20
pass "with the log reader stopped: writes, a snapshot taken and read, cbt-map, a destroy, 20 more connections"

# 3. The reader continues: what was logged meanwhile arrives, lines whole.
kill -CONT "$reader_pid"
await_log 'snapshot s destroyed' 30 || fail "the lines logged while the reader was stopped never arrived"
grep -Ev '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z nbdsnapd (error|warning|info|debug): ' "$server_log" >"$dir/bad" || true
[[ ! -s $dir/bad ]] || fail "cut or mixed log lines: $(sed -n 1,3p "$dir/bad")"
pass "reader continued: $(wc -l <"$server_log") lines, whole"

# 4. A stop while the reader is stopped again.
connections 300
kill -STOP "$reader_pid"
connections 300
stop_server TERM
((server_status == 0)) || fail "nbdsnapd exited $server_status after SIGTERM with the log reader stopped"
kill -CONT "$reader_pid"
wait "$reader_pid" || true
cbt_file_is_clean disk || fail "the CBT state was not saved clean"
pass "SIGTERM with the log reader stopped: exit 0 after $stop_ms ms, CBT saved clean"

# 5. stderr on a pty whose other end nobody reads.
rm -f "$sock" "$ctl"
"$PY" - "$NBDSNAPD" "$dir" "$(uri disk)" <<'EOF' || fail "stderr on a terminal nobody reads: see above"
import os, pty, signal, subprocess, sys, time
nbdsnapd, d, uri = sys.argv[1:4]
master, slave = pty.openpty()  # the master is never read
server = subprocess.Popen([nbdsnapd, "--listen", f"unix:{d}/nbd.sock", "--control", f"{d}/control.sock",
                           "--state-dir", f"{d}/state", "--origin", f"disk={d}/disk.img", "--log-level", "debug"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, start_new_session=True)
os.close(slave)
try:
    for _ in range(600):
        if os.path.exists(f"{d}/control.sock"):
            break
        time.sleep(0.1)
    clients = subprocess.run(["timeout", "60", sys.executable, "-c", '''
import nbd, sys
for _ in range(400):
    h = nbd.NBD(); h.connect_uri(sys.argv[1]); h.pread(4096, 0); h.shutdown()
''', uri])
    if clients.returncode != 0:
        sys.exit("400 connections did not complete within 60 s with stderr on a pty nobody reads")
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        status = server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        sys.exit("nbdsnapd still ran 30 s after SIGTERM with stderr on a pty nobody reads")
    if status != 0:
        sys.exit(f"nbdsnapd exited {status}")
    print(f"ok: stderr on a pty nobody reads: 400 connections served, SIGTERM ended it in "
          f"{time.monotonic() - started:.1f} s")
finally:
    if server.poll() is None:
        server.kill()
    os.close(master)
EOF
cbt_file_is_clean disk || fail "pty: the CBT state was not saved clean"

# 6. stderr closed.
head -c 1M /dev/zero >"$dir/zeros"
dd if=/dev/zero of="$dir/disk.img" bs=1M count=1 conv=notrunc status=none
rm -f "$sock" "$ctl"
setsid "$NBDSNAPD" --listen "unix:$sock" --control "$ctl" --state-dir "$state" --log-level debug \
  --origin "disk=$dir/disk.img" </dev/null >/dev/null 2>&- {_nap_fd}>&- &
server_pid=$!
_await_ready
connections 20
stop_server TERM
((server_status == 0)) || fail "nbdsnapd with stderr closed exited $server_status"
cmp -n 1M "$dir/disk.img" "$dir/zeros" || fail "with stderr closed, the log was written into the origin's disk image"
pass "stderr closed: the origin's disk image holds no log line"
