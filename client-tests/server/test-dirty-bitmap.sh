#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-dirty-bitmap.sh — on the image of snapshot s2, qemu:dirty-bitmap:s1 marks exactly the CBT blocks
# written (write, write zeroes, trim) between taking s1 and taking s2: nothing before s1, nothing after s2.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

size=$((64 << 20))
truncate -s $size "$dir/disk.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw"
qemu-io -f raw -c "write -P 0x01 0 8M" "$(uri disk)" >/dev/null   # before s1: must not show
snapshot s1 disk
# between s1 and s2: offset length pairs
between=("1048576 65536" "10489856 4096" "31457280 2097152" "50000000 1" "67043328 65536")
qemu-io -f raw -c "write -P 0x02 1M 64k" -c "write -P 0x03 10489856 4k" -c "write -z 30M 2M" \
  -c "write -P 0x04 50000000 1" -c "discard 67043328 64k" "$(uri disk)" >/dev/null
ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null
snapshot s2 disk
qemu-io -f raw -c "write -P 0x05 40M 1M" "$(uri disk)" >/dev/null  # after s2: must not show

block=$(jf "$(ctl '{"command":"cbt-info","origin":"disk"}')" 'r["cbt"]["block_size"]')
nbdinfo --map=qemu:dirty-bitmap:s1 "$(uri disk@s2)" | tee "$dir/map.txt"
nbdinfo --json --map=qemu:dirty-bitmap:s1 "$(uri disk@s2)" >"$dir/map.json"
/usr/bin/python3 - "$dir/map.json" "$block" "$size" "${between[@]}" <<'PY' || fail "dirty bitmap differs from the writes"
import json, sys
extents = json.load(open(sys.argv[1]))
block, size = int(sys.argv[2]), int(sys.argv[3])
expected = set()
for pair in sys.argv[4:]:
    offset, length = map(int, pair.split())
    expected.update(range(offset // block, (offset + length - 1) // block + 1))
dirty = set()
covered = 0
for e in extents:
    assert e["offset"] == covered, f"gap at {covered}"
    covered += e["length"]
    if e["type"] & 1:
        assert e["offset"] % block == 0 and e["length"] % block == 0, f"unaligned dirty extent {e}"
        dirty.update(range(e["offset"] // block, (e["offset"] + e["length"]) // block))
assert covered == size, f"map covers {covered} of {size}"
if dirty != expected:
    sys.exit(f"dirty blocks {sorted(dirty)} != expected {sorted(expected)}")
print(f"{len(dirty)} dirty blocks of {block} bytes, as written")
PY
# The origin export has no dirty bitmap context, and s2 has no checkpoint of its own to compare with.
nbdinfo --map=qemu:dirty-bitmap:s2 "$(uri disk@s2)" >/dev/null 2>&1 && fail "s2 offered a bitmap against itself"
nbdinfo --map=qemu:dirty-bitmap:s1 "$(uri disk)" >/dev/null 2>&1 && fail "origin export offered a dirty bitmap"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0"
echo PASS
