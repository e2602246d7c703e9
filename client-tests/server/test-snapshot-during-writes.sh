#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-snapshot-during-writes.sh — a snapshot image keeps the origin's take-time bytes while qemu-io rewrites
# the whole origin: copied out with nbdcopy during the writes, it equals (qemu-img compare) a copy of the
# origin made before them. A second snapshot taken in the middle of a write storm holds, for every written
# block, either all of its old bytes or all of its new ones, never anything else.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

size=$((64 << 20))
block=65536
blocks=$((size / block))
truncate -s $size "$dir/disk.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw"

# writes_script PATTERN-BASE: qemu-io commands writing every 64 KiB block with its own pattern.
writes_script() {
  local base=$1 i args=()
  for ((i = 0; i < blocks; i++)); do
    args+=(-c "write -P $(((base + i) % 251 + 1)) $((i * block)) $block")
  done
  printf '%s\n' "${args[@]}"
}

qemu-io -f raw -c "write -P 0x11 0 $size" "$(uri disk)" >/dev/null
cp --sparse=never "$dir/disk.raw" "$dir/before.raw"

# Phase 1: take, then rewrite the whole origin while nbdcopy reads the image out.
snapshot s1 disk
mapfile -t phase1 < <(writes_script 7)
qemu-io -f raw "${phase1[@]}" "$(uri disk)" >"$dir/qemu-io-1.log" &
writer=$!
nbdcopy --connections=2 "$(uri disk@s1)" "$dir/image1.raw"
wait $writer || fail "qemu-io writes failed"
qemu-img compare -q -f raw -F raw "$dir/before.raw" "$dir/image1.raw" || fail "image differs from the origin at take"
qemu-img compare -q -f raw -F raw "$dir/before.raw" "$dir/disk.raw" && fail "the writes did not reach the origin"
nbdcopy "$(uri disk@s1)" "$dir/image1-after.raw"
qemu-img compare -q -f raw -F raw "$dir/before.raw" "$dir/image1-after.raw" || fail "image changed after the writes"
ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null

# Phase 2: take in the middle of a write storm.
cp --sparse=never "$dir/disk.raw" "$dir/old.raw"
mapfile -t phase2 < <(writes_script 101)
qemu-io -f raw "${phase2[@]}" "$(uri disk)" >"$dir/qemu-io-2.log" &
writer=$!
snapshot s2 disk
wait $writer || fail "qemu-io writes failed"
nbdcopy "$(uri disk@s2)" "$dir/image2.raw"
/usr/bin/python3 - "$dir/old.raw" "$dir/disk.raw" "$dir/image2.raw" $block <<'PY' || fail "image 2 holds bytes the origin never had at one time"
import sys
old, new, image = (open(p, "rb") for p in sys.argv[1:4])
block = int(sys.argv[4])
olds = news = 0
while True:
    o, n, i = old.read(block), new.read(block), image.read(block)
    if not o:
        break
    if i == o:
        olds += 1
    elif i == n:
        news += 1
    else:
        sys.exit(f"block at {old.tell() - block} is neither old nor new")
print(f"image 2: {olds} blocks from before the take, {news} written before it")
PY
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0"
echo PASS
