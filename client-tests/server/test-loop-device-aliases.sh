#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-loop-device-aliases.sh — a loop device is its backing file: with a file attached as origin, a loop
# device over it (at byte 0 or at an offset) is refused as a second origin and as the origin's difference
# storage, and the origin and its snapshot keep their bytes; the other way round, with the loop device
# attached, the file is refused as origin and as storage. Through the control socket of a real nbdsnapd.
# Needs root and loop devices; skipped (77) otherwise.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

requires_root
requires losetup --version
truncate -s 16M "$dir/disk.raw"
qemu-io -f raw -c 'write -P 0x11 0 16M' "$dir/disk.raw" >/dev/null
loop=$(losetup --find --show "$dir/disk.raw" 2>/dev/null) || skip "no loop device here"
loops=("$loop")
# The server goes first (a loop device it holds is not detached at once), then the loop devices this test made.
release_loop_devices() {
  local device i
  if [[ -n $server_pid ]]; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  for device in "${loops[@]}"; do
    for ((i = 0; i < 50; i++)); do losetup -d "$device" 2>/dev/null && break; sleep 0.1; done
  done
}
cleanup_fn release_loop_devices
offset_loop=$(losetup --find --show --offset 4194304 "$dir/disk.raw" 2>/dev/null) || skip "no second loop device"
loops+=("$offset_loop")

# expect_refused WHAT JSON: the request fails with already_exists, its message naming WHAT.
expect_refused() {
  local reply
  reply=$(ctl "$2") && fail "accepted: $2 -> $reply"
  [[ $(jf "$reply" 'r["error"]["code"]') == already_exists ]] || fail "not already_exists: $2 -> $reply"
  jf "$reply" 'r["error"]["message"]' | grep -F "$1" >/dev/null || fail "the refusal does not name $1: $reply"
}

start_nbdsnapd --origin "o=$dir/disk.raw"

# 1. The file is origin o: a loop device over it is neither another origin nor o's storage (at create, and
# appended to a taken snapshot).
for device in "$loop" "$offset_loop"; do
  expect_refused "origin 'o'" "{\"command\":\"origin-attach\",\"name\":\"x\",\"path\":\"$device\"}"
  expect_refused "origin 'o'" "{\"command\":\"snapshot-create\",\"name\":\"t\",\"origins\":[\"o\"],
    \"storage\":[{\"path\":\"$device\",\"offset\":8388608,\"length\":4194304}]}"
done
snapshot s1 o
for device in "$loop" "$offset_loop"; do
  expect_refused "origin 'o'" "{\"command\":\"snapshot-append-storage\",\"name\":\"s1\",
    \"path\":\"$device\",\"offset\":8388608,\"length\":4194304}"
done
reply=$(ctl '{"command":"origins"}')
[[ $(jf "$reply" 'sorted(o["name"] for o in r["origins"])') == "['o']" ]] || fail "origins: $reply"
reply=$(ctl '{"command":"snapshot-list"}')
[[ $(jf "$reply" 'sorted(s["name"] for s in r["snapshots"])') == "['s1']" ]] || fail "snapshots: $reply"
write 0x22 0 1M o || fail "write through o"
qemu-io -f raw -r -c 'read -P 0x11 0 16M' "$(image_uri o s1)" >/dev/null || fail "o@s1 lost its take-time bytes"
qemu-io -f raw -r -c 'read -P 0x22 0 1M' -c 'read -P 0x11 1M 15M' "$(uri o)" >/dev/null || fail "o changed"
echo "ok: a loop device over an origin's file is refused as a second origin and as its storage"

# 2. The loop device is origin x: its backing file is neither another origin nor x's storage.
ctl '{"command":"snapshot-destroy","name":"s1"}' '{"command":"origin-detach","name":"o"}' >/dev/null
ctl "{\"command\":\"origin-attach\",\"name\":\"x\",\"path\":\"$loop\"}" >/dev/null || fail "attach the loop device"
expect_refused "origin 'x'" "{\"command\":\"origin-attach\",\"name\":\"o\",\"path\":\"$dir/disk.raw\"}"
expect_refused "origin 'x'" "{\"command\":\"origin-attach\",\"name\":\"y\",\"path\":\"$offset_loop\"}"
expect_refused "origin 'x'" "{\"command\":\"snapshot-create\",\"name\":\"t\",\"origins\":[\"x\"],
  \"storage\":[{\"path\":\"$dir/disk.raw\",\"offset\":8388608,\"length\":4194304}]}"
qemu-io -f raw -r -c 'read -P 0x22 0 1M' -c 'read -P 0x11 1M 15M' "$(uri x)" >/dev/null || fail "x reads wrong bytes"
echo "ok: the backing file of a loop device origin is refused as another origin and as its storage"

stop_server TERM
echo PASS
