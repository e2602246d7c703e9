#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-block-device-origin-locks.sh — a read-write block device origin (a loop device) is opened exclusively:
# a second nbdsnapd on the same device exits at start naming the first, qemu-io cannot open it, and a mounted
# device is refused naming its mount point. Needs root and loop devices; skipped (77) otherwise.
source "$(dirname "$0")/common.sh"

if ((EUID != 0)) || ! command -v losetup >/dev/null; then
  echo "SKIP: needs root and losetup"
  exit 77
fi
truncate -s 64M "$tmp/backing.raw"
loop=$(losetup --find --show "$tmp/backing.raw" 2>/dev/null) || { echo "SKIP: no loop device here"; exit 77; }
mounted= second=
# The servers go first (a loop device in use is not detached), then the mount and the loop device, then
# common.sh's cleanup with the test's exit status (errexit is off so that `(exit $status)` does not end the trap).
release_loop_device() {
  local status=$? i
  set +e
  [[ -n $second ]] && kill -KILL "$second" 2>/dev/null
  if [[ -f $pidfile ]]; then
    kill -KILL "$(cat "$pidfile")" 2>/dev/null
    wait "$(cat "$pidfile")" 2>/dev/null
  fi
  [[ -n $mounted ]] && umount "$mounted"
  for ((i = 0; i < 50; i++)); do losetup -d "$loop" 2>/dev/null && break; sleep 0.1; done
  (exit $status)
  cleanup
}
trap release_loop_device EXIT

start_nbdsnapd --origin "blk=$loop"
first_pid=$(cat "$pidfile")
qemu-io -f raw -c 'write -P 0x11 0 1M' "$(uri blk)" >/dev/null || fail "write through nbdsnapd"

# A second nbdsnapd: the exclusive open fails, and the lock on the device node names the holder.
setsid "$nbdsnapd" --listen "unix:$tmp/2.sock" --control "$tmp/2.ctl" --state-dir "$tmp/2.state" \
  --origin "again=$loop" </dev/null >"$tmp/second.log" 2>&1 &
second=$!
for ((i = 0; i < 300; i++)); do kill -0 "$second" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$second" 2>/dev/null; then
  kill -KILL "$second"
  fail "a second nbdsnapd served the same block device"
fi
grep -q "busy: origin again .*$loop is in use (opened by nbdsnapd, pid $first_pid)" "$tmp/second.log" ||
  fail "second nbdsnapd: $(cat "$tmp/second.log")"

qemu-io -f raw -c 'write -P 0x99 0 4k' "$loop" >"$tmp/qemu-io.out" 2>&1 && fail "qemu-io wrote a served block device"
grep -q 'Failed to lock byte\|Failed to get .* lock' "$tmp/qemu-io.out" || fail "qemu-io: $(cat "$tmp/qemu-io.out")"
echo "ok: a served block device is refused to a second nbdsnapd and to qemu-io"

# A mounted block device: writes of the file system would bypass the tracker, so attaching it is refused.
control '{"command":"origin-detach","name":"blk"}' >/dev/null
if command -v mkfs.ext4 >/dev/null && mkfs.ext4 -q "$loop" && mkdir "$tmp/mnt" && mount "$loop" "$tmp/mnt" 2>/dev/null; then
  mounted=$tmp/mnt
  reply=$(control "{\"command\":\"origin-attach\",\"name\":\"blk\",\"path\":\"$loop\"}") &&
    fail "attached a mounted block device: $reply"
  [[ $(json_field "$reply" 'r["error"]["code"]') == busy ]] || fail "mounted device: $reply"
  json_field "$reply" 'r["error"]["message"]' | grep -q "in use (mounted on $tmp/mnt)" || fail "mounted device: $reply"
  umount "$mounted"
  mounted=
  control "{\"command\":\"origin-attach\",\"name\":\"blk\",\"path\":\"$loop\"}" >/dev/null ||
    fail "the unmounted device stayed refused"
  echo "ok: a mounted block device is refused, naming its mount point"
else
  echo "note: cannot mount here; the mounted-device case was not checked"
fi
stop_nbdsnapd TERM
echo PASS
