#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-block-device-origin-locks.sh — a read-write block device origin (a loop device) is opened exclusively:
# a second nbdsnapd on the same device exits at start naming the first, qemu-io cannot open it, and a mounted
# device is refused naming its mount point. Needs root and loop devices; skipped (77) otherwise.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

requires_root
requires losetup --version
truncate -s 64M "$dir/backing.raw"
loop=$(losetup --find --show "$dir/backing.raw" 2>/dev/null) || skip "no loop device here"
mounted= second=
# The servers go first (a loop device in use is not detached), then the mount and the loop device.
release_loop_device() {
  local i
  [[ -n $second ]] && kill -KILL "$second" 2>/dev/null
  if [[ -n $server_pid ]]; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  [[ -n $mounted ]] && umount "$mounted"
  for ((i = 0; i < 50; i++)); do losetup -d "$loop" 2>/dev/null && break; sleep 0.1; done
}
cleanup_fn release_loop_device

start_nbdsnapd --origin "blk=$loop"
first_pid=$server_pid
qemu-io -f raw -c 'write -P 0x11 0 1M' "$(uri blk)" >/dev/null || fail "write through nbdsnapd"

# A second nbdsnapd: the exclusive open fails, and the lock on the device node names the holder.
setsid "$NBDSNAPD" --listen "unix:$dir/2.sock" --control "$dir/2.ctl" --state-dir "$dir/2.state" \
  --origin "again=$loop" </dev/null >"$dir/second.log" 2>&1 &
second=$!
for ((i = 0; i < 300; i++)); do kill -0 "$second" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$second" 2>/dev/null; then
  kill -KILL "$second"
  fail "a second nbdsnapd served the same block device"
fi
grep -q "busy: origin again .*$loop is in use (opened by nbdsnapd, pid $first_pid)" "$dir/second.log" ||
  fail "second nbdsnapd: $(cat "$dir/second.log")"

qemu-io -f raw -c 'write -P 0x99 0 4k' "$loop" >"$dir/qemu-io.out" 2>&1 && fail "qemu-io wrote a served block device"
grep -q 'Failed to lock byte\|Failed to get .* lock' "$dir/qemu-io.out" || fail "qemu-io: $(cat "$dir/qemu-io.out")"
echo "ok: a served block device is refused to a second nbdsnapd and to qemu-io"

# A mounted block device: writes of the file system would bypass the tracker, so attaching it is refused.
ctl '{"command":"origin-detach","name":"blk"}' >/dev/null
if command -v mkfs.ext4 >/dev/null && mkfs.ext4 -q "$loop" && mkdir "$dir/mnt" && mount "$loop" "$dir/mnt" 2>/dev/null; then
  mounted=$dir/mnt
  reply=$(ctl "{\"command\":\"origin-attach\",\"name\":\"blk\",\"path\":\"$loop\"}") &&
    fail "attached a mounted block device: $reply"
  [[ $(jf "$reply" 'r["error"]["code"]') == busy ]] || fail "mounted device: $reply"
  jf "$reply" 'r["error"]["message"]' | grep "in use (mounted on $dir/mnt)" >/dev/null || fail "mounted device: $reply"
  umount "$mounted"
  mounted=
  ctl "{\"command\":\"origin-attach\",\"name\":\"blk\",\"path\":\"$loop\"}" >/dev/null ||
    fail "the unmounted device stayed refused"
  echo "ok: a mounted block device is refused, naming its mount point"
else
  echo "note: cannot mount here; the mounted-device case was not checked"
fi
stop_server TERM
echo PASS
