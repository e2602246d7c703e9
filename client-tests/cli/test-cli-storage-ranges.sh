#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-storage-ranges.sh — difference storage as ranges of one file (PATH:OFFSET+LENGTH) through the CLI and
# the control socket of a real nbdsnapd: two ranges serve one snapshot, a third another snapshot, images read
# take-time data, nothing outside the ranges is written; overlaps (with each other, with an origin) and specs
# that are not sizes are refused in words, and none of them becomes a file.
# Usage: test-cli-storage-ranges.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

truncate -s 16M "$dir/disk.img" "$dir/data.img"
# The shared storage file: 0xee everywhere, so bytes nbdsnap never wrote show.
head -c 64M /dev/zero | tr '\0' '\356' >"$dir/shared.img"
cp "$dir/shared.img" "$dir/pristine.img"
start_nbdsnapd --origin "disk=$dir/disk.img" --origin "data=$dir/data.img" --chunk-buffer-budget 0
write 0x11 0 16M disk
write 0x22 0 16M data

# Two ranges of one file in one snapshot: 8M at 8M, then 8M at 32M once more is needed.
run_cli 0 snapshot create a --origin disk --storage "$dir/shared.img:8M+8M" --storage "$dir/shared.img:32M+8M"
expect_out "shared.img +8388608 +8\.0 MiB +no"
expect_out "shared.img +33554432 +8\.0 MiB +no"
run_cli 0 --json snapshot info a
[[ $(jq_out '.snapshot.storage[1].offset') == 33554432 ]] || fail "second range's offset: $out"
[[ $(jq_out '.snapshot.storage_total') == 16777216 ]] || fail "storage total: $out"
# A third range of the same file for another snapshot, by the control socket's JSON form.
run_cli 0 snapshot create b --origin data --storage "$dir/shared.img:48M+16M"
run_cli 0 snapshot take a
run_cli 0 snapshot take b
write 0x33 0 12M disk   # 48 chunks of 256 KiB: the first range (32 chunks) fills, the second takes the rest
write 0x44 0 4M data
qemu-io -f raw -r -c 'read -P 0x11 0 16M' "$(uri disk@a)" >/dev/null || fail "disk@a lost take-time data"
qemu-io -f raw -r -c 'read -P 0x22 0 16M' "$(uri data@b)" >/dev/null || fail "data@b lost take-time data"
run_cli 0 --json snapshot info a
[[ $(jq_out '.snapshot.storage_used') == 12582912 ]] || fail "storage used: $out"
[[ $(jq_out '.snapshot.state') == taken ]] || fail "state: $out"
cmp -n 8388608 "$dir/shared.img" "$dir/pristine.img" || fail "bytes before the first range were written"
cmp -i 37748736 -n 12582912 "$dir/shared.img" "$dir/pristine.img" || fail "bytes between the ranges were written"
pass "two ranges of one file serve one snapshot, a third another; nothing outside them is written"

# Overlaps are refused, naming what they overlap.
run_cli 1 snapshot append-storage a "$dir/shared.img:12M+8M"
expect_err "overlaps difference storage of snapshot 'a' \(bytes 8388608\.\.16777215 of "
run_cli 1 snapshot append-storage a "$dir/shared.img:50M+1M"
expect_err "overlaps difference storage of snapshot 'b'"
run_cli 1 snapshot append-storage a "$dir/shared.img"
expect_err "overlaps"
run_cli 1 snapshot append-storage a "$dir/data.img:1M+1M"
expect_err "overlaps origin 'data'"
run_cli 1 snapshot append-storage a "$dir/shared.img:60M+8M"
expect_err "overlaps"
run_cli 1 snapshot append-storage a "$dir/pristine.img:60M+8M"
expect_err "ends at byte 71303168 but .*pristine.img has only 67108864 bytes"
run_cli 0 snapshot append-storage a "$dir/shared.img:0+8M"
pass "overlapping ranges, an origin's file and ranges past the end are refused; a free range is appended"

# Specs that are not sizes are usage errors in words, never files named after the typo.
for spec in "$dir/x:-5M" "$dir/x:1.5G" "$dir/x:1G+" "$dir/x:lots"; do
  run_cli 2 snapshot append-storage a "$spec"
  grep -qF "storage '$spec': " <<<"$err" || fail "stderr does not quote the spec $spec: $err"
  expect_err "end the spec with ':' when the file name itself contains ':'"
done
run_cli 2 snapshot append-storage a "$dir/x:1.5G"
expect_err "1\.5G is 1536M"
ls "$dir" | grep '^x' >/dev/null && fail "a storage spec became a file: $(ls "$dir")"
pass "storage specs that are not sizes are refused in words and create no file"

# A path containing ':' is written with a trailing ':'.
head -c 8M /dev/zero >"$dir/odd:name.img"
run_cli 0 snapshot append-storage a "$dir/odd:name.img:"
expect_out "odd:name\.img +0 +8\.0 MiB"
pass "a path containing ':' is given with a trailing ':'"

run_cli 0 snapshot destroy a
run_cli 0 snapshot destroy b
[[ -f $dir/shared.img ]] || fail "destroy removed a storage file it did not create"
run_cli 0 snapshot create c --origin disk --storage "$dir/shared.img:0+16M"  # the lock was given back and taken again
run_cli 0 snapshot destroy c
pass "destroy leaves the ranges' file in place and lets go of it"

# Storage that cannot hold one chunk (256 KiB here) is refused at create and append, and no file is made.
run_cli 1 snapshot create d --origin disk --storage "$dir/tiny.diff:100K"
expect_err "holds 100\.0 KiB, less than one chunk of origin 'disk' \(256\.0 KiB\)"
[[ ! -e $dir/tiny.diff ]] || fail "a refused storage file was left behind"
run_cli 1 snapshot create d --origin disk --storage "$dir/shared.img:0+100K"
expect_err "less than one chunk"
run_cli 1 snapshot create d --origin disk --storage "$dir/d.diff:1M" --limit 4K
expect_err "limit 4096 \(4\.0 KiB\) is less than one chunk of origin 'disk'"
run_cli 0 snapshot create d --origin disk --storage "$dir/shared.img:0+256K"
run_cli 1 snapshot append-storage d "$dir/shared.img:1M+4K"
expect_err "less than one chunk"
run_cli 0 snapshot destroy d
pass "storage or a limit smaller than one chunk is refused at create and append"
