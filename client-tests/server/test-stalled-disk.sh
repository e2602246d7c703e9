#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-stalled-disk.sh — writes stuck on one origin's disk (a frozen file system, as on a dead NFS server or a
# dying disk) hold up only that origin. With one 64 KiB write to f and more writes to f in flight than
# --threads, all stuck in the kernel: new connections to origin q are served, reads, writes and flushes on q
# (a new connection and one opened before) complete, and a snapshot of q is created, taken and destroyed,
# within seconds. After the thaw f's writes complete with their data. SIGTERM during such a stall ends
# nbdsnapd once the disk thaws (engine calls in flight are not cut short). Run with --io-threads 1 and 2 and
# --threads 2. Before the fix, small writes ran on the connection's I/O thread (also run()'s, with the
# listeners) and a fixed pool of --threads workers was taken by the stuck writes: q was not served.
# Usage: test-stalled-disk.sh NBDSNAPD. Skips (77) without root, mkfs.ext4, fsfreeze or a loop mount.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
freezable_fs 64M

# The clients, all in one process with libnbd's asynchronous calls, each awaited with a deadline.
#   stall FS SOCK: freeze FS, get writes to f stuck, check q, thaw, check f's writes and data.
#   stuck FS SOCK: freeze FS and leave one write to f stuck (for the SIGTERM check).
cat >"$dir/clients.py" <<'EOF'
import subprocess, sys, time
import nbd
mode, fs, sock = sys.argv[1:4]
uri = lambda e: f"nbd+unix:///{e}?socket={sock}"
def fail(text):
    sys.exit("FAIL: " + text)
def until(h, done, seconds, what):
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            fail(f"{what}: not done within {seconds} s")
        h.poll(50)
def connect(export, seconds, what):
    h = nbd.NBD()
    h.aio_connect_uri(uri(export))
    until(h, lambda: h.aio_is_ready() or h.aio_is_dead(), seconds, what)
    if h.aio_is_dead():
        fail(f"{what}: the connection died")
    return h
def run(h, cookie, seconds, what):
    until(h, lambda: h.aio_command_completed(cookie), seconds, what)
def write(h, data, offset, seconds, what):
    run(h, h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), offset), seconds, what)
def read(h, length, offset, seconds, what):
    buf = nbd.Buffer(length)
    run(h, h.aio_pread(buf, offset), seconds, what)
    return bytes(buf.to_bytearray())
def ctl(*requests):
    return subprocess.run([sys.executable, "-m", "nbdsnap", sock.replace("nbd.sock", "control.sock"), *requests],
                          timeout=10, capture_output=True, text=True)

def freeze():
    subprocess.run(["timeout", "60", "sync", "-f", fs], check=True)  # this file system only (freeze_fs)
    subprocess.run(["timeout", "30", "fsfreeze", "-f", fs], check=True)

if mode == "stuck":
    freeze()
    f = connect("f", 10, "connect to f")
    f.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b"\x77" * 4096)), 0)
    time.sleep(0.5)
    f.poll(0)
    print("stuck", flush=True)
    time.sleep(60)  # killed by the test
    sys.exit(0)

q_old = connect("q", 10, "connect to q before the stall")
write(q_old, b"\x51" * 65536, 0, 10, "write to q before the stall")

f_small = connect("f", 10, "connect to f")
f_many = connect("f", 10, "second connection to f")
freeze()
# One small write (served inline on the I/O thread before the fix), and more writes in flight than --threads
# (4 KiB ones and 128 KiB ones, which always went to the workers) on a second connection.
small = f_small.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b"\x66" * 65536)), 0)
many = [(b"\x67" * 4096, 1 << 20), (b"\x68" * 4096, (1 << 20) + 8192), (b"\x69" * 4096, (1 << 20) + 16384)]
many += [(bytes([0x70 + i]) * (128 << 10), (2 + i) << 20) for i in range(4)]
cookies = [f_many.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(d)), o) for d, o in many]
deadline = time.monotonic() + 1
while time.monotonic() < deadline:
    f_small.poll(20)
    f_many.poll(20)
if f_small.aio_command_completed(small) or any(f_many.aio_command_completed(c) for c in cookies):
    fail("a write to the frozen file system completed: the test stalls nothing")

start = time.monotonic()
for i in range(4):
    q = connect("q", 5, f"new connection {i} to q while writes to f are stuck")
    write(q, bytes([0x52 + i]) * 4096, (i + 1) * 65536, 5, f"4 KiB write on new connection {i} to q")
    if read(q, 4096, (i + 1) * 65536, 5, f"4 KiB read on new connection {i} to q") != bytes([0x52 + i]) * 4096:
        fail(f"new connection {i} to q read back other data")
    read(q, 1 << 20, 0, 5, f"1 MiB read on new connection {i} to q")
    run(q, q.aio_flush(), 5, f"flush on new connection {i} to q")
    q.shutdown()
write(q_old, b"\x53" * 4096, 4 << 20, 5, "4 KiB write on the connection to q opened before")
write(q_old, b"\x54" * (1 << 20), 5 << 20, 5, "1 MiB write on the connection to q opened before")
if read(q_old, 4096, 0, 5, "4 KiB read on the connection to q opened before") != b"\x51" * 4096:
    fail("the connection to q opened before read back other data")
run(q_old, q_old.aio_flush(), 5, "flush on the connection to q opened before")
storage = sock.replace("nbd.sock", "q.diff")
done = ctl('{"command":"snapshot-create","name":"s","origins":["q"],"storage":[{"path":"%s","size":%d}]}'
           % (storage, 16 << 20), '{"command":"snapshot-take","name":"s"}', '{"command":"snapshot-destroy","name":"s"}')
if done.returncode != 0:
    fail("a snapshot of q during the stall: " + done.stdout + done.stderr)
print(f"ok: q served while writes to f were stuck ({time.monotonic() - start:.2f} s)", flush=True)
if f_small.aio_command_completed(small) or any(f_many.aio_command_completed(c) for c in cookies):
    fail("a write to f completed while its file system was frozen")

subprocess.run(["timeout", "30", "fsfreeze", "-u", fs], check=True)
run(f_small, small, 30, "the 64 KiB write to f after the thaw")
for c in cookies:
    run(f_many, c, 30, "the writes to f after the thaw")
f = connect("f", 10, "connect to f after the thaw")
if read(f, 65536, 0, 10, "read f") != b"\x66" * 65536:
    fail("f does not hold the 64 KiB write made while frozen")
for d, o in many:
    if read(f, len(d), o, 10, "read f") != d:
        fail(f"f does not hold the write at {o} made while frozen")
print("ok: after the thaw the writes to f completed with their data", flush=True)
EOF

truncate -s 8M "$fs/f.raw" "$dir/q.raw"
for io_threads in 1 2; do
  start_nbdsnapd --log "io$io_threads" --io-threads "$io_threads" --threads 2 \
    --origin "f=$fs/f.raw" --origin "q=$dir/q.raw"
  "$PY" "$dir/clients.py" stall "$fs" "$sock" || fail "--io-threads $io_threads: see above"
  pass "--io-threads $io_threads --threads 2: a stalled disk held up only its own origin"

  # SIGTERM while a write is stuck: nbdsnapd waits for it (engine calls are never cut short) and ends
  # cleanly once the file system thaws.
  # A file of this round's own: the first look may come before the client's shell has opened (truncated) its
  # output, and the last round's "stuck" then read as this one's (seen under TSan, io-threads 2).
  stuck_out=$dir/stuck-io$io_threads.out
  "$PY" "$dir/clients.py" stuck "$fs" "$sock" >"$stuck_out" 2>&1 &
  stuck=$!
  track_pid "$stuck"
  for ((i = 0; i < 6000; i++)); do  # 60 s: its freeze (fsfreeze has 30 s) and connect (10 s)
    grep -q stuck "$stuck_out" 2>/dev/null && break
    kill -0 "$stuck" 2>/dev/null || break
    _nap 0.01
  done
  grep -q stuck "$stuck_out" || fail "no write stuck on f: $(cat "$stuck_out")"
  # The client sent its write; nbdsnapd must be writing it, asleep on the frozen file system (state D), before
  # the SIGTERM: a loaded machine (TSan, CI) may not have read it off the socket yet, and a stop then rightly
  # ends without it.
  for ((i = 0; i < 3000; i++)); do  # 30 s
    grep -qs '^State:[[:space:]]*D' /proc/"$server_pid"/task/*/status && break
    _nap 0.01
  done
  grep -qs '^State:[[:space:]]*D' /proc/"$server_pid"/task/*/status ||
    fail "no thread of nbdsnapd waits on the frozen file system 30 s after the client's write"
  kill -TERM "$server_pid"
  _nap 2
  kill -0 "$server_pid" 2>/dev/null || fail "nbdsnapd ended while a write to f was still stuck"
  thaw_fs
  start=$(date +%s%N)
  await_server_exit "$start"
  # (await_server_exit fails past STOP_TIMEOUT: what this checks is that the stop ends once the disk thaws, not
  # how fast a loaded machine writes back what the freeze held.)
  ((server_status == 0)) || fail "nbdsnapd exited $server_status after SIGTERM during a stall"
  kill "$stuck" 2>/dev/null || true
  wait "$stuck" 2>/dev/null || true
  pass "--io-threads $io_threads: SIGTERM during the stall ended nbdsnapd $stop_ms ms after the thaw"
done
echo PASS
