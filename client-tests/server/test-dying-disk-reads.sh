#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-dying-disk-reads.sh — one small READ on a disk that stopped answering holds up only its own origin, even
# when the bytes' block mapping is not in memory. Origin f is a sparse file with thousands of extents (ext4
# keeps its extent tree in blocks of its own, as for any large or fragmented VM image) on an ext4 file system
# on a dm-linear device over a loop device; caches are dropped and the device is suspended with
# `dmsetup suspend --noflush --nolockfs` (I/O queues in the kernel, as on a dying disk). Then one 4 KiB READ
# of f; a new connection to origin q (another disk) with a write and a read, and a read on a connection to q
# opened before, must be served within 5 s, with --io-threads 1. The same for a READ of image g@s of a chunk
# stored in a fragmented difference-storage file on that disk. After the resume both READs return their data.
# Before the fix such READs ran on the I/O thread with preadv2(RWF_NOWAIT), which still starts readahead, and
# ext4 read the extent tree synchronously for it: the I/O thread slept in D state and q was not served.
# Without device-mapper (a kernel without dm-mod) the disk is an nbdkit file export with the pause filter,
# seen through nbdfuse and a loop device; without either, the test is skipped.
# Usage: test-dying-disk-reads.sh NBDSNAPD. Skips (77) without root, mkfs.ext4, loop devices or a way to stall.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
requires_root
requires mkfs.ext4 -V
requires losetup --version
[[ -w /proc/sys/vm/drop_caches ]] || skip "cannot drop caches (/proc/sys/vm/drop_caches is not writable)"

fs=$dir/fs
mkdir "$fs"
disk_image=$dir/disk.img
truncate -s 128M "$disk_image"
loop=""
dm_name=""
pause_sock=""
suspended=0
if command -v dmsetup >/dev/null && dmsetup version >/dev/null 2>&1; then
  loop=$(losetup -f --show "$disk_image" 2>/dev/null) || skip "no free loop device"
  dm_name=nbdsnap-test-dying-$$
  dmsetup create "$dm_name" --table "0 $((128 << 11)) linear $loop 0" || skip "dmsetup create failed"
  device=/dev/mapper/$dm_name
  for ((i = 0; i < 100; i++)); do [[ -b $device ]] && break; _nap 0.05; done  # udev may create the node late
  [[ -b $device ]] || dmsetup mknodes "$dm_name"
  stall_with="dm $dm_name"
else
  # No device-mapper in this kernel: the nbdkit pause filter stalls the disk instead.
  requires nbdkit --version
  requires nbdfuse --version
  nbdkit --filter=pause null --help >/dev/null 2>&1 ||
    skip "neither device-mapper (dmsetup: $(dmsetup version 2>&1 | tail -n 1)) nor nbdkit's pause filter"
  pause_sock=$dir/pause.sock
  setsid nbdkit -f -U "$dir/disk.sock" --filter=pause file "$disk_image" "pause-control=$pause_sock" \
    </dev/null >"$dir/nbdkit.log" 2>&1 &
  track_pid $!
  wait_for_path "$pause_sock" $!
  mkdir "$dir/fuse"
  setsid nbdfuse "$dir/fuse/disk" "nbd+unix:///?socket=$dir/disk.sock" </dev/null >"$dir/nbdfuse.log" 2>&1 &
  track_pid $!
  for ((i = 0; i < 200; i++)); do [[ -e $dir/fuse/disk ]] && break; _nap 0.05; done
  [[ -e $dir/fuse/disk ]] || skip "nbdfuse did not start: $(cat "$dir/nbdfuse.log")"
  loop=$(losetup -f --show "$dir/fuse/disk" 2>/dev/null) || skip "no free loop device"
  device=$loop
  stall_with="pause $pause_sock"
fi
resume_disk() {
  ((suspended)) || return 0
  if [[ -n $dm_name ]]; then
    timeout 30 dmsetup resume "$dm_name" || true
  else
    timeout 30 "$PY" -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"r"); s.recv(1)' \
      "$pause_sock" || true
  fi
  suspended=0
}
# Runs at exit, first (registered last): the disk answers again, the server stops, then everything is taken down.
take_down_disk() {
  resume_disk
  [[ -z ${server_pid:-} ]] || stop_server TERM
  mountpoint -q "$fs" && { timeout 30 umount "$fs" || timeout 30 umount -l "$fs"; }
  [[ -z $dm_name ]] || timeout 30 dmsetup remove "$dm_name" || timeout 30 dmsetup remove --force "$dm_name" || true
  [[ -z $loop ]] || losetup -d "$loop" || true
  [[ -z $pause_sock ]] || timeout 30 umount "$dir/fuse" || timeout 30 umount -l "$dir/fuse" || true
}
cleanup_fn take_down_disk
# The client script suspends the disk itself; it tells the shell, so that the cleanup resumes it.
echo 0 >"$dir/suspended"

mkfs.ext4 -q -F "$device" || skip "mkfs.ext4 on $device failed"
timeout 30 mount "$device" "$fs" || skip "cannot mount $device"

# f: 64 MiB, 4 KiB of data every 16 KiB (4096 extents). The storage of snapshot s, 1 MiB: its first 256 KiB
# (where chunk 0 of g goes) allocated 4 KiB at a time, each block written out between two blocks of another
# file, so that no two are adjacent on disk (ext4 would merge blocks it allocates one after the other).
"$PY" - "$fs/f.raw" "$fs/s.diff" "$fs/spacer" <<'EOF'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.truncate(64 << 20)
    for i in range(4096):
        f.seek(i * 16384)
        f.write(bytes([0x30 + i % 64]) * 4096)
storage = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT, 0o600)
spacer = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT, 0o600)
for i in range(64):
    os.pwrite(storage, b"\xee" * 4096, i * 4096)
    os.fsync(storage)
    os.pwrite(spacer, b"\xdd" * 4096, i * 4096)
    os.fsync(spacer)
os.pwrite(storage, b"\xee" * (768 << 10), 256 << 10)
os.close(storage)
os.close(spacer)
os.unlink(sys.argv[3])
os.sync()
EOF
extents() { filefrag "$1" | sed -E 's/.*: ([0-9]+) extents? found/\1/'; }
truncate -s 8M "$dir/q.raw"
"$PY" -c 'import sys; open(sys.argv[1], "wb").write(b"\x47" * (8 << 20))' "$dir/g.raw"

cat >"$dir/clients.py" <<'EOF'
import os, subprocess, sys, time
import nbd
mode, sock, mechanism, target, device, flag = sys.argv[1:7]
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
def read(h, length, offset, seconds, what):
    buf = nbd.Buffer(length)
    run(h, h.aio_pread(buf, offset), seconds, what)
    return bytes(buf.to_bytearray())
def write(h, data, offset, seconds, what):
    run(h, h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), offset), seconds, what)
def stall(command):
    if mechanism == "dm":
        args = ["dmsetup", command, "--noflush", "--nolockfs", target] if command == "suspend" else ["dmsetup", command, target]
        subprocess.run(["timeout", "30"] + args, check=True)
    else:
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(target)
        s.sendall(b"p" if command == "suspend" else b"r")
        s.recv(1)
        s.close()
    open(flag, "w").write("1\n" if command == "suspend" else "0\n")
def drop_caches():
    os.sync()
    open("/proc/sys/vm/drop_caches", "w").write("3\n")
    fd = os.open(device, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)

if mode == "origin":
    export, offset, expected, what = "f", 3000 * 16384, bytes([0x30 + 3000 % 64]) * 4096, "a 4 KiB READ of f"
else:
    export, offset, expected, what = "g@s", 8192, b"\x47" * 4096, "a 4 KiB READ of image g@s (chunk in storage)"
q_old = connect("q", 10, "connect to q before the stall")
write(q_old, b"\x51" * 4096, 0, 10, "write to q before the stall")
victim = connect(export, 10, f"connect to {export}")
read(victim, 4096, 0, 10, f"a read of {export} before the stall")
drop_caches()
stall("suspend")
cookie = victim.aio_pread(nbd.Buffer(4096), offset)
deadline = time.monotonic() + 1
while time.monotonic() < deadline:
    victim.poll(20)
if victim.aio_command_completed(cookie):
    fail(f"{what} completed on the suspended disk: the test stalls nothing")

start = time.monotonic()
for i in range(2):
    q = connect("q", 5, f"new connection {i} to q while {what} is stuck")
    write(q, bytes([0x52 + i]) * 4096, (i + 1) * 65536, 5, f"4 KiB write on new connection {i} to q")
    if read(q, 4096, (i + 1) * 65536, 5, f"4 KiB read on new connection {i} to q") != bytes([0x52 + i]) * 4096:
        fail(f"new connection {i} to q read back other data")
    q.shutdown()
if read(q_old, 4096, 0, 5, "4 KiB read on the connection to q opened before") != b"\x51" * 4096:
    fail("the connection to q opened before read back other data")
print(f"ok: q served while {what} was stuck ({time.monotonic() - start:.2f} s)", flush=True)
if victim.aio_command_completed(cookie):
    fail(f"{what} completed on the suspended disk")

stall("resume")
run(victim, cookie, 30, f"{what} after the resume")
if read(victim, 4096, offset, 30, f"{what} again") != expected:
    fail(f"{what} returned other data after the resume")
print(f"ok: after the resume {what} completed with its data", flush=True)
EOF

for mode in ${DYING_DISK_MODES:-origin image}; do  # DYING_DISK_MODES=image: one of them
  start_nbdsnapd --log "$mode" --io-threads 1 --threads 2 --origin "f=$fs/f.raw" --origin "q=$dir/q.raw" \
    --origin "g=$dir/g.raw"
  if [[ $mode == image ]]; then
    ctl "{\"command\":\"snapshot-create\",\"name\":\"s\",\"origins\":[\"g\"],\"storage\":[{\"path\":\"$fs/s.diff\"}]}" \
      '{"command":"snapshot-take","name":"s"}' >/dev/null
    write 0x48 0 4K g  # copies chunk 0 of g (its old bytes, 0x47) into s.diff
    for ((i = 0; i < 100; i++)); do  # chunks_copied counts a chunk once it is written to storage
      info=$(ctl '{"command":"snapshot-info","name":"s"}')
      [[ $(jf "$info" 'r["snapshot"]["chunks_copied"]') -ge 1 ]] && break
      _nap 0.1
    done
    [[ $(jf "$info" 'r["snapshot"]["chunks_copied"]') -ge 1 ]] || fail "chunk 0 of g never reached s.diff: $info"
    sync
    storage_extents=$(extents "$fs/s.diff")
    ((storage_extents > 4)) || fail "s.diff has $storage_extents extents: its extent tree is in the inode"
  fi
  f_extents=$(extents "$fs/f.raw")
  ((f_extents > 4)) || fail "f has $f_extents extents: its extent tree is in the inode"
  suspended=1  # from here on the client may have suspended the disk
  "$PY" "$dir/clients.py" "$mode" "$sock" $stall_with "$device" "$dir/suspended" || fail "$mode: see above"
  suspended=$(cat "$dir/suspended")
  pass "--io-threads 1, $mode: a READ stuck on a suspended disk held up only its own export"
  stop_server TERM
  ((server_status == 0)) || fail "nbdsnapd exited $server_status after the $mode check"
  server_pid=""
done
echo PASS
