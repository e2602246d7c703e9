#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-backup-chain-damage.sh — damaged chain files are named, never read for ever, restored from or
# merged: a point file replaced by a symbolic link to a FIFO or to /dev/zero makes `backup verify` name it at
# once (it used to block on the FIFO's open, or hash /dev/zero without end); a point file cut short is refused
# by restore (QEMU read the missing end as zeroes, and the restore succeeded with other data); a prune that
# would merge a damaged file refuses and changes nothing (it recorded a new checksum over the damage, and the
# damaged point verified); a manifest recording two checksums of a file that disagree names the point,
# whichever one is wrong (verify used to check the preferred one only).
# Usage: test-cli-backup-chain-damage.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
requires qemu-img --version
requires qemu-nbd --version

truncate -s 16M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img"
chain=$dir/chain
write 0x11 0 4M disk
run_cli 0 snapshot create s1 --origin disk --storage "$dir/s1.diff:8M"
run_cli 0 snapshot take s1
run_cli 0 backup --image "$(uri disk@s1)" --format qcow2 --to "$chain"
qemu-img convert -f raw -O raw "$(uri disk@s1)" "$dir/at-s1.img"
run_cli 0 snapshot destroy s1
write 0x22 2M 4M disk
run_cli 0 snapshot create s2 --origin disk --storage "$dir/s2.diff:8M"
run_cli 0 snapshot take s2
run_cli 0 backup --image "$(uri disk@s2)" --format qcow2 --to "$chain" --since s1
qemu-img convert -f raw -O raw "$(uri disk@s2)" "$dir/at-s2.img"
run_cli 0 snapshot destroy s2
base=$chain/0001.qcow2
mv "$base" "$dir/saved.qcow2"

mkfifo "$dir/fifo"
for target in "$dir/fifo" /dev/zero; do
  ln -sfn "$target" "$base"
  run_cli_within 20 1 backup verify "$chain"
  expect_out "^0001 .*0001.qcow2 is not a regular file"
  expect_out "^0002 .*built on point 0001, which is damaged"
  ((elapsed_ms < 10000)) || fail "verify took $elapsed_ms ms to name the $target in 0001's place"
done
pass "a symbolic link to a FIFO or to /dev/zero in a point file's place: verify names it at once"
rm "$base"
mv "$dir/saved.qcow2" "$base"
run_cli 0 backup verify "$chain"

# Both checksums recorded, one of them wrong: the point is named either way.
manifest=$chain/nbdsnap-chain.json
cp "$manifest" "$dir/manifest.good"
sha=$(sha256sum "$base" | cut -d' ' -f1)
xxh=$(jq -r '.points[0].checksums.file_xxh3_128' "$manifest")
jq '.points[0].checksums.file_sha256 = "00"' "$dir/manifest.good" >"$manifest"
run_cli 1 backup verify "$chain"
expect_out "^0001 .*0001.qcow2 is damaged: its SHA-256 is $sha, the manifest says 00"
jq --arg sha "$sha" '.points[0].checksums.file_sha256 = $sha | .points[0].checksums.file_xxh3_128 = "00"' \
  "$dir/manifest.good" >"$manifest"
run_cli 1 backup verify "$chain"
expect_out "^0001 .*0001.qcow2 is damaged: its XXH3-128 is $xxh, the manifest says 00"
jq --arg sha "$sha" '.points[0].checksums.file_sha256 = $sha' "$dir/manifest.good" >"$manifest"
run_cli 0 backup verify "$chain"
cp "$dir/manifest.good" "$manifest"
pass "two checksums of a file that disagree name the point, whichever is wrong; two that agree verify"

# Cut short by 4 KiB (a copy of the chain that ran out of space): restore refuses both points.
cp "$base" "$dir/saved.qcow2"
truncate -s -4096 "$base"
for point in 0001 0002; do
  run_cli 4 restore "$chain" --point $point --to "$dir/restored.img"
  expect_err "point $point cannot be restored: .*0001.qcow2 \\(point 0001\\) holds [0-9]+ bytes, the manifest says [0-9]+"
done
cp "$dir/saved.qcow2" "$base"
run_cli 0 restore "$chain" --point 0002 --to "$dir/restored.img"
cmp "$dir/restored.img" "$dir/at-s2.img" || fail "point 0002 differs from s2"
pass "a point file cut short: restore refuses every point built on it; whole again, 0002 restores exactly"

# A data cluster of 0001 that 0002 does not overwrite (offset 0) damaged: prune --keep 1 would merge it.
manifest=$(cat "$chain/nbdsnap-chain.json")
offset=$(qemu-img map -f qcow2 --output=json "$base" | jq '[.[] | select(.data and .start == 0)][0].offset')
printf '\xff\xff\xff\xff' | dd of="$base" bs=1 seek="$offset" conv=notrunc status=none
run_cli 4 backup prune "$chain" --keep 1
expect_err "nothing changed: point 0002 would be merged with point 0001, which is not sound \\(.*0001.qcow2 is damaged"
[[ $(cat "$chain/nbdsnap-chain.json") == "$manifest" ]] || fail "the refused prune changed the manifest"
run_cli 1 backup verify "$chain"
expect_out "^0001 .*is damaged"
cp "$dir/saved.qcow2" "$base"
run_cli 0 backup prune "$chain" --keep 1
run_cli 0 backup verify "$chain"
run_cli 0 restore "$chain" --point 0002 --to "$dir/restored.img"
cmp "$dir/restored.img" "$dir/at-s2.img" || fail "point 0002 differs from s2 after the prune"
pass "a prune that would merge a damaged file refuses and changes nothing; whole again, it merges exactly"
