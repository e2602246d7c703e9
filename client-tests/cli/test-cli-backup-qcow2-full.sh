#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-backup-qcow2-full.sh — a full qcow2 restore point written by qemu-img convert reading the image
# itself (issue 18's speed goal): the point equals the image and keeps its holes, --verify runs qemu-img compare,
# --progress=FD climbs to 100/100, the file is private (or --mode), the manifest's XXH3-128 is what `xxhsum -H2`
# prints; a point of an older manifest carrying only SHA-256 still verifies (and its damage is named), one with
# no known checksum is named; a TLS image (nbds+unix://, which QEMU cannot open as given) is written through
# qemu-nbd instead, and equals the image too. A disk whose size is not a multiple of 512 restores exactly.
# Usage: test-cli-backup-qcow2-full.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
requires qemu-img --version
requires qemu-nbd --version
requires xxhsum --version

disk=$dir/disk.img
truncate -s 64M "$disk"
start_nbdsnapd --origin "disk=$disk"
write 0x11 0 1M disk
write 0x22 20M 2M disk
write 0x33 63M 1M disk
run_cli 0 snapshot create s1 --origin disk --storage "$dir/s1.diff:16M"
run_cli 0 snapshot take s1
write 0x44 0 8M disk  # the origin moves on (over data and holes); the image must not

chain=$dir/chain
umask 000
exec 3>"$dir/progress"
run_cli 0 --json backup --image "$(uri disk@s1)" --format qcow2 --to "$chain" --verify --progress=3
exec 3>&-
umask 022
[[ $(jq_out .kind) == full && $(jq_out .point) == 0001 ]] || fail "full point: $out"
(($(jq_out .bytes_written) == 4 * 1048576)) || fail "bytes_written $(jq_out .bytes_written), expected 4 MiB: $out"
(($(jq_out .verify_bytes_read) > 0)) || fail "--verify re-read nothing: $out"
qemu-img compare -q -f raw -F qcow2 "$(uri disk@s1)" "$chain/0001.qcow2" || fail "the point differs from the image"
stored=$(qemu-img map -f qcow2 --output=json "$chain/0001.qcow2" | jq '[.[] | select(.data and (.zero | not)) | .length] | add')
((stored == 4 * 1048576)) || fail "the point stores $stored bytes of data, expected 4 MiB (holes kept)"
[[ $(stat -c %a "$chain/0001.qcow2") == 600 ]] || fail "point file mode $(stat -c %a "$chain/0001.qcow2")"
grep -Ev '^[0-9]+/100$' "$dir/progress" >/dev/null && fail "--progress lines: $(cat "$dir/progress")"
[[ $(tail -n 1 "$dir/progress") == 100/100 ]] || fail "--progress did not end at 100/100: $(cat "$dir/progress")"
sort -n -c "$dir/progress" 2>/dev/null || fail "--progress went back: $(cat "$dir/progress")"
recorded=$(jq -r '.points[0].checksums.file_xxh3_128' "$chain/nbdsnap-chain.json")
[[ $recorded == $(xxhsum -H2 "$chain/0001.qcow2" 2>/dev/null | cut -d' ' -f1) ]] ||
  fail "manifest XXH3-128 $recorded is not what xxhsum -H2 prints: $(xxhsum -H2 "$chain/0001.qcow2" 2>&1)"
pass "full point by qemu-img convert: equals the image, 4 MiB stored (holes kept), verify, progress, mode, xxhsum"

# An incremental point on top of it (through qemu-nbd) restores exactly.
run_cli 0 snapshot destroy s1
run_cli 0 snapshot create s2 --origin disk --storage "$dir/s2.diff:16M"
run_cli 0 snapshot take s2
write 0x55 8M 1M disk
run_cli 0 --json backup --image "$(uri disk@s2)" --format qcow2 --to "$chain" --since s1
[[ $(jq_out .kind) == incremental ]] || fail "second point: $out"
run_cli 0 restore "$chain" --point 0002 --to "$dir/restored.img"
qemu-img compare -q -f raw -F raw "$dir/restored.img" "$(uri disk@s2)" || fail "point 0002 differs from s2"
run_cli 0 backup verify "$chain"
pass "an incremental point over the qemu-img point restores as its image; the chain verifies"

# A manifest written before XXH3-128: its SHA-256 is checked as it is, and damage named with it.
manifest=$chain/nbdsnap-chain.json
sha=$(sha256sum "$chain/0001.qcow2" | cut -d' ' -f1)
jq --arg sha "$sha" '.points[0].checksums = {file_sha256: $sha}' "$manifest" >"$dir/m.json"
cp "$dir/m.json" "$manifest"
run_cli 0 backup verify "$chain"
expect_out '^0001 .* ok$'
jq '.points[0].checksums = {file_sha256: "00"}' "$dir/m.json" >"$manifest"
run_cli 1 backup verify "$chain"
expect_out "^0001 .*0001.qcow2 is damaged: its SHA-256 is $sha, the manifest says 00"
jq '.points[0].checksums = {file_md5: "00"}' "$dir/m.json" >"$manifest"
run_cli 1 backup verify "$chain"
expect_out "the manifest records no checksum of .*0001.qcow2 that this version of nbdsnap knows"
cp "$dir/m.json" "$manifest"
pass "an older point's SHA-256 verifies and names damage; a point with no known checksum is named"

run_cli 0 --json backup --image "$(uri disk@s2)" --format qcow2 --to "$dir/chain-0640" --mode 0640
[[ $(stat -c %a "$dir/chain-0640/0001.qcow2") == 640 ]] || fail "--mode 0640 gave $(stat -c %a "$dir/chain-0640/0001.qcow2")"
pass "--mode applies to a point qemu-img convert writes"

# A disk whose size is not a multiple of 512: QEMU sizes qcow2 in sectors, so the points read rounded up; a
# restore writes the disk's own bytes only, and verify accepts the rounding (both writers: qemu-img convert and,
# with --requests, the copier through qemu-nbd; an incremental point on top).
head -c 1048676 /dev/urandom >"$dir/odd.img"
cp "$dir/odd.img" "$dir/odd-at-o1.img"
run_cli 0 origin attach odd "$dir/odd.img"
run_cli 0 snapshot create o1 --origin odd --storage "$dir/o1.diff:8M"
run_cli 0 snapshot take o1
run_cli 0 backup --image "$(uri odd@o1)" --format qcow2 --to "$dir/odd-chain" --verify
expect_out '^verify: +ok, .* re-read, qemu-img compare: identical$'
run_cli 0 backup --image "$(uri odd@o1)" --format qcow2 --to "$dir/odd-chain-copier" --requests 4 --verify
expect_out '^verify: +ok, .* re-read, checksums match$'
run_cli 0 snapshot destroy o1
write 0x66 1048000 676 odd  # up to the last byte
cp "$dir/odd.img" "$dir/odd-at-o2.img"
run_cli 0 snapshot create o2 --origin odd --storage "$dir/o2.diff:8M"
run_cli 0 snapshot take o2
run_cli 0 backup --image "$(uri odd@o2)" --format qcow2 --to "$dir/odd-chain" --since o1
for chain_dir in odd-chain odd-chain-copier; do
  run_cli 0 backup verify "$dir/$chain_dir"
  run_cli 0 restore "$dir/$chain_dir" --point 0001 --to "$dir/odd-restored.img"
  cmp "$dir/odd-restored.img" "$dir/odd-at-o1.img" || fail "$chain_dir point 0001 differs from the odd-sized disk"
done
run_cli 0 restore "$dir/odd-chain" --point 0002 --to "$dir/odd-restored.img"
cmp "$dir/odd-restored.img" "$dir/odd-at-o2.img" || fail "odd-chain point 0002 differs from the odd-sized disk"
pass "a disk of 1 MiB + 100 bytes: full (both writers) and incremental points verify and restore byte for byte"
stop_server

# TLS: QEMU cannot open nbds+unix://...?tls-psk-file= as given, so the full point goes through qemu-nbd.
"$(dirname "$0")/../tls-credentials.sh" psk "$dir/keys.psk" agent1 || exit $?
start_nbdsnapd --origin "disk=$disk" --tls require --tls-psk "$dir/keys.psk"
run_cli 0 snapshot create t1 --origin disk --storage "$dir/t1.diff:16M"
run_cli 0 snapshot take t1
tls_uri="nbds+unix://agent1@/disk@t1?socket=$sock&tls-psk-file=$dir/keys.psk"
run_cli 0 --json backup --image "$tls_uri" --format qcow2 --to "$dir/chain-tls" --verify
[[ $(jq_out .kind) == full ]] || fail "TLS full point: $out"
run_cli 0 restore "$dir/chain-tls" --to "$dir/restored-tls.img"
cmp "$dir/restored-tls.img" "$disk" || fail "the TLS point differs from the disk"
pass "a full point from a TLS image URI (through qemu-nbd) restores as the disk"
