#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-restore-checksums.sh — restore checks every file it reads against the manifest's checksum before it
# writes a byte: two point files of one size swapped on disk (the size check cannot see it) and one byte flipped
# in a point file (bit rot) make restore refuse (exit 4) naming the point, the file, the checksum the manifest
# expects and what to do, and leave the target as it was (absent, a file with its old bytes, a block device
# with its old bytes). It used to restore the wrong point, or the rotten byte, with exit status 0. Points not
# built on the damaged file still restore.
# Usage: test-cli-restore-checksums.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
requires qemu-img --version
requires qemu-nbd --version

truncate -s 8M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img"
chain=$dir/chain
previous=
for n in 1 2 3; do
  write "0x$n$n" $(((n - 1) * 1048576)) 1M disk  # each point's own file holds 1 MiB of data
  run_cli 0 snapshot create "s$n" --origin disk --storage "$dir/s$n.diff:16M"
  run_cli 0 snapshot take "s$n"
  cp --sparse=always "$dir/disk.img" "$dir/at-s$n.img"
  run_cli 0 backup --image "$(uri "disk@s$n")" --to "$chain" --format qcow2 ${previous:+--since "$previous"}
  run_cli 0 snapshot destroy "s$n"
  previous=s$n
done
size2=$(stat -c %s "$chain/0002.qcow2")
size3=$(stat -c %s "$chain/0003.qcow2")
((size2 == size3)) || fail "setup: 0002.qcow2 ($size2 bytes) and 0003.qcow2 ($size3) differ in size"
xxh2=$(jq -r '.points[1].checksums.file_xxh3_128' "$chain/nbdsnap-chain.json")
xxh3=$(jq -r '.points[2].checksums.file_xxh3_128' "$chain/nbdsnap-chain.json")

# An existing target with bytes of its own: it must keep them through every refusal.
head -c 8M /dev/zero | tr '\0' '\167' >"$dir/old.img"
old_sum=$(md5sum <"$dir/old.img")
target_unchanged() {
  [[ $(md5sum <"$dir/old.img") == "$old_sum" ]] || fail "$1: the refused restore changed the existing target"
  [[ ! -e $dir/new.img ]] || fail "$1: the refused restore created a new target"
  compgen -G "$dir/*.partial-restore.*" >/dev/null && fail "$1: a partial file was left: $(ls "$dir")"
  return 0
}

# Two point files of the same size swapped: QEMU reads 0002's data as point 0003's, and 0003's as 0002's.
mv "$chain/0002.qcow2" "$dir/swap" && mv "$chain/0003.qcow2" "$chain/0002.qcow2" && mv "$dir/swap" "$chain/0003.qcow2"
for target in "$dir/new.img" "$dir/old.img"; do
  run_cli 4 restore "$chain" --point 0003 --to "$target"
  expect_err "point 0003 cannot be restored: point 0002's file does not match the manifest: $chain/0002.qcow2 is damaged: its XXH3-128 is [0-9a-f]+, the manifest says $xxh2\\. Nothing was written to $target\\."
  expect_err "Run 'nbdsnap backup verify $chain' to see every damaged point; restore an older point \\(--point 0001, verify it first\\)"
  target_unchanged "swapped files, --to $(basename "$target")"
done
run_cli 4 restore "$chain" --point 0002 --to "$dir/new.img"
expect_err "point 0002 cannot be restored: point 0002's file does not match the manifest: $chain/0002.qcow2 is damaged"
target_unchanged "swapped files, point 0002"
run_cli 0 restore "$chain" --point 0001 --to "$dir/new.img"
cmp "$dir/new.img" "$dir/at-s1.img" || fail "point 0001, not built on the swapped files, differs from s1"
rm "$dir/new.img"
mv "$chain/0002.qcow2" "$dir/swap" && mv "$chain/0003.qcow2" "$chain/0002.qcow2" && mv "$dir/swap" "$chain/0003.qcow2"
run_cli 0 restore "$chain" --point 0003 --to "$dir/new.img"
cmp "$dir/new.img" "$dir/at-s3.img" || fail "point 0003 differs from s3 once the files are back"
rm "$dir/new.img"
pass "two point files of one size swapped: restore refuses, naming file, point and checksum; target unchanged"

# One byte flipped (bit rot) in a data cluster of the base, then of the newest point.
flip_byte() {  # flip_byte FILE: the first byte of its first data cluster, xor 0xff
  local offset byte
  offset=$(qemu-img map -f qcow2 --output=json "$1" | jq '[.[] | select(.data and .depth == 0)][0].offset')
  byte=$(od -An -tu1 -j "$offset" -N1 "$1" | tr -d ' ')
  printf "\\x$(printf %02x $((byte ^ 255)))" | dd of="$1" bs=1 seek="$offset" conv=notrunc status=none
}
cp "$chain/0001.qcow2" "$dir/saved.qcow2"
flip_byte "$chain/0001.qcow2"
for point in 0001 0003; do
  run_cli 4 restore "$chain" --point $point --to "$dir/old.img"
  expect_err "point $point cannot be restored: point 0001's file does not match the manifest: $chain/0001.qcow2 is damaged: its XXH3-128 is [0-9a-f]+, the manifest says [0-9a-f]+\\. Nothing was written"
  expect_err "restore from another copy of the chain"
  target_unchanged "a byte flipped in 0001, point $point"
done
cp "$dir/saved.qcow2" "$chain/0001.qcow2"
cp "$chain/0003.qcow2" "$dir/saved.qcow2"
flip_byte "$chain/0003.qcow2"
run_cli 4 restore "$chain" --to "$dir/new.img" --json
[[ $(jq_out .error.code) == io_error ]] || fail "--json of a damaged point: $out"
jq_out .error.message | grep -E "point 0003's file does not match the manifest: .*, the manifest says $xxh3\\. .*--point 0002" >/dev/null ||
  fail "--json message: $out"
target_unchanged "a byte flipped in 0003"
run_cli 0 restore "$chain" --point 0002 --to "$dir/new.img"
cmp "$dir/new.img" "$dir/at-s2.img" || fail "point 0002, older than the damaged 0003, differs from s2"
rm "$dir/new.img"
cp "$dir/saved.qcow2" "$chain/0003.qcow2"
pass "a byte flipped in a point file: restore of every point reading it refuses, target unchanged; older points restore"

# A block device (a loop device over a file, as root): checked before its first write too.
if ((EUID == 0)) && loop=$(losetup -f --show "$dir/old.img" 2>/dev/null); then
  cleanup_fn losetup -d "$loop"
  cp "$chain/0002.qcow2" "$dir/saved.qcow2"
  flip_byte "$chain/0002.qcow2"
  run_cli 4 restore "$chain" --to "$loop"
  expect_err "point 0002's file does not match the manifest: .*Nothing was written to $loop\\."
  [[ $(md5sum <"$loop") == "$old_sum" ]] || fail "the refused restore wrote the block device"
  cp "$dir/saved.qcow2" "$chain/0002.qcow2"
  run_cli 0 restore "$chain" --to "$loop"
  cmp "$loop" "$dir/at-s3.img" || fail "the block device differs from s3 once the file is whole again"
  pass "a damaged point file: a restore into a block device refuses before writing it"
fi
