#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-origin-lock-loop.sh — a loop device and its backing file are one disk: the filter serving one of them and
# nbdsnapd (or a second nbdkit with the filter) serving the other refuse each other, in either order, naming
# the holder. A hostile tester saw both accept writes, each missing from the other's images and CBT. Read-only
# servers still share the file, and a detached origin's file is free again. A mounted loop device is refused to
# the filter as to nbdsnapd (its file system writes it): the filter claims a read-write block device with O_EXCL.
# Needs root and loop devices; skipped (77) otherwise.
# Usage: test-origin-lock-loop.sh FILTER.so NBDSNAPD
FILTER=${1:?usage: $0 FILTER.so NBDSNAPD}
NBDSNAPD=$(realpath "${2:?usage: $0 FILTER.so NBDSNAPD}")
source "$(dirname "$0")/../functions.sh"

requires_root
requires losetup --version
truncate -s 4M "$dir/disk.raw"
loop=$(losetup --find --show "$dir/disk.raw" 2>/dev/null) || skip "no loop device here"
started=()
# The servers go first (a loop device in use is not detached at once), then the loop device this test made.
release_loop_device() {
  local pid i
  for pid in "${started[@]}" $server_pid; do
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  umount "$dir/mnt" 2>/dev/null
  for ((i = 0; i < 50; i++)); do losetup -d "$loop" 2>/dev/null && break; sleep 0.1; done
}
cleanup_fn release_loop_device

# other_filter NAME PATH: a second nbdkit with the filter over PATH on $dir/NAME.sock; its pid in $other_pid.
other_filter() {
  setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit -f -v -U "$dir/$1.sock" \
    --filter="$(realpath "$FILTER")" file "$2" nbdsnap-control="$dir/$1.ctl" \
    nbdsnap-state-dir="$dir/$1-state" </dev/null >"$dir/$1.log" 2>&1 {_nap_fd}>&- &
  other_pid=$!
  started+=("$other_pid")
  wait_for_path "$dir/$1.sock" "$other_pid"
}
# nbdsnapd_exits_at_start NAME ARGS...: nbdsnapd with ARGS must exit at start; its output in $dir/NAME.out.
nbdsnapd_exits_at_start() {
  local name=$1 status=0
  shift
  timeout 30 "$NBDSNAPD" --listen "unix:$dir/$name.sock" --control "$dir/$name.ctl" --state-dir "$dir/$name-state" \
    "$@" >"$dir/$name.out" 2>&1 {_nap_fd}>&- || status=$?
  ((status != 0)) || fail "nbdsnapd $* started"
}

# 1. nbdsnapd on the loop device: the filter refuses the backing file; nbdsnapd on the file: the filter
# refuses the loop device.
start_nbdsnapd --origin "disk=$loop"
other_filter k1 "$dir/disk.raw"
expect_refused_write "nbd+unix:///?socket=$dir/k1.sock" "$dir/k1.log" \
  "disk.raw.* is locked by another process (nbdsnapd" "$other_pid"
_stop_pid "$other_pid"
stop_server TERM
start_nbdsnapd --origin "disk=$dir/disk.raw"
other_filter k2 "$loop"
expect_refused_write "nbd+unix:///?socket=$dir/k2.sock" "$dir/k2.log" \
  "disk.raw.* is locked by another process (nbdsnapd" "$other_pid"
grep -q "(the backing file of $loop) is locked" "$dir/k2.log" || fail "k2 does not say which file: $(cat "$dir/k2.log")"
_stop_pid "$other_pid"
stop_server TERM
pass "an nbdsnapd origin and the filter on a loop device and its backing file refuse each other"

# 2. The filter on the loop device: nbdsnapd and a second filter refuse the backing file; the filter on the
# file: nbdsnapd refuses the loop device.
start_filter --log loop file "$loop" nbdsnap-state-dir="$dir/state"
timeout 30 qemu-io -f raw -c 'write -P 0x11 0 4k' "$(uri '')" >/dev/null || fail "write through the filter"
nbdsnapd_exits_at_start d1 --origin "disk=$dir/disk.raw"
grep -q "disk.raw is locked by another process (nbdkit" "$dir/d1.out" || fail "nbdsnapd said: $(cat "$dir/d1.out")"
other_filter k3 "$dir/disk.raw"
expect_refused_write "nbd+unix:///?socket=$dir/k3.sock" "$dir/k3.log" \
  "disk.raw.* is locked by another process (nbdkit" "$other_pid"
_stop_pid "$other_pid"
# Detached, the loop device's file is free: nbdsnapd serves it.
ctl '{"command":"origin-detach","name":"default"}' >/dev/null || fail "detach"
setsid "$NBDSNAPD" --listen "unix:$dir/d2.sock" --control "$dir/d2.ctl" --state-dir "$dir/d2-state" \
  --origin "disk=$dir/disk.raw" </dev/null >"$dir/d2.out" 2>&1 {_nap_fd}>&- &
other_pid=$!
started+=("$other_pid")
wait_for_path "$dir/d2.sock" "$other_pid"
timeout 30 qemu-io -f raw -r -c 'read -P 0x11 0 4k' "nbd+unix:///disk?socket=$dir/d2.sock" >/dev/null ||
  fail "nbdsnapd does not serve the file behind the loop device the filter detached"
_stop_pid "$other_pid"
stop_server TERM
start_filter --log file file "$dir/disk.raw" nbdsnap-state-dir="$dir/state"
timeout 30 qemu-io -f raw -c 'write -P 0x22 0 4k' "$(uri '')" >/dev/null || fail "write through the filter"
nbdsnapd_exits_at_start d3 --origin "disk=$loop"
grep -q "disk.raw (the backing file of $loop) is locked by another process (nbdkit" "$dir/d3.out" ||
  fail "nbdsnapd said: $(cat "$dir/d3.out")"
stop_server TERM
pass "the filter's origin, a loop device or its file, is refused to nbdsnapd and a second filter on the other"

# 3. Read-only: the filter on the loop device and nbdsnapd on the file share it.
start_filter --log ro -r file "$loop" nbdsnap-state-dir="$dir/state"
timeout 30 qemu-io -f raw -r -c 'read -P 0x22 0 4k' "$(uri '')" >/dev/null || fail "read through the filter"
setsid "$NBDSNAPD" --listen "unix:$dir/d4.sock" --control "$dir/d4.ctl" --state-dir "$dir/d4-state" \
  --origin-read-only "disk=$dir/disk.raw" </dev/null >"$dir/d4.out" 2>&1 {_nap_fd}>&- &
other_pid=$!
started+=("$other_pid")
wait_for_path "$dir/d4.sock" "$other_pid"
timeout 30 qemu-io -f raw -r -c 'read -P 0x22 0 4k' "nbd+unix:///disk?socket=$dir/d4.sock" >/dev/null ||
  fail "a read-only nbdsnapd does not share the file of the filter's read-only loop device"
_stop_pid "$other_pid"
stop_server TERM
pass "read-only servers share a loop device's backing file"

# 4. A mounted device: its file system writes it behind any tracker, so the filter refuses it read-write, naming
# the mount point, as nbdsnapd does (both open a read-write block device O_EXCL). The tester's filter served it.
if command -v mkfs.ext4 >/dev/null && mkfs.ext4 -q -F "$loop" >/dev/null 2>&1 && mkdir -p "$dir/mnt" &&
  mount "$loop" "$dir/mnt" 2>/dev/null; then
  start_filter --log mounted file "$loop" nbdsnap-state-dir="$dir/state"
  if timeout 30 qemu-io -f raw -c 'write -P 0x33 1M 4k' "$(uri '')" >"$dir/write.out" 2>&1; then
    fail "a write through the filter reached $loop, mounted on $dir/mnt"
  fi
  grep -q "$loop is in use (mounted on $dir/mnt)" "$server_log" ||
    fail "the filter does not name the mount point: $(cat "$dir/write.out")"
  stop_server TERM
  nbdsnapd_exits_at_start d5 --origin "disk=$loop"
  grep -q "$loop is in use (mounted on $dir/mnt)" "$dir/d5.out" || fail "nbdsnapd said: $(cat "$dir/d5.out")"
  umount "$dir/mnt"
  pass "a mounted loop device is refused to the filter and to nbdsnapd, naming the mount point"
else
  echo "SKIP (part): no ext4 file system could be made and mounted on $loop"
fi
