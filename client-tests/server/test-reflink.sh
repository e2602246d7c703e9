#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-reflink.sh — nbdsnapd --reflink auto on an XFS image made with reflink=1 (core/extent_clone.h): after a
# take, sequential and random writes through qemu-io leave the image equal to a copy of the origin made at the
# take and the origin with the new data; the storage file holds shared extents (filefrag -v), the log says the
# chunks were shared; CBT since the take's checkpoint covers every write; a second snapshot on sparse storage
# does the same; a clone that fails with another errno (the storage file made immutable under nbdsnapd: EPERM)
# corrupts the snapshot while the origin write succeeds; --cache none (O_DIRECT) shares extents too, and
# --reflink off copies. Skips (77) when not root or the image cannot be made or mounted.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
requires_root
requires mkfs.xfs -V
requires command -v filefrag
requires command -v chattr
requires nbdcopy --version

# A bad mode is refused at start, naming the option and the modes.
if "$NBDSNAPD" --reflink on --state-dir "$dir/bad-state" --listen "unix:$dir/bad.sock" --control none \
  >"$dir/bad.log" 2>&1; then
  fail "--reflink on was accepted"
fi
grep -- "--reflink 'on' is not a reflink mode: give auto" "$dir/bad.log" >/dev/null || fail "unclear error: $(cat "$dir/bad.log")"

xfs=$dir/xfs
mkdir "$xfs"
truncate -s 1G "$dir/xfs.img"
mkfs.xfs -q -m reflink=1 "$dir/xfs.img" || skip "mkfs.xfs -m reflink=1 failed"
mount -o loop "$dir/xfs.img" "$xfs" 2>/dev/null || skip "cannot loop-mount an XFS image"
# Unmounts the image: the server first (it holds files there), then the immutable flag a fault left.
unmount_xfs() {
  [[ -z $server_pid ]] || stop_server TERM
  chattr -i "$xfs"/*.diff 2>/dev/null
  umount "$xfs" || umount -l "$xfs"
}
cleanup_fn unmount_xfs

size=$((32 << 20))
head -c $size /dev/urandom >"$xfs/disk.raw"

# take NAME [SPARSE]: a snapshot of disk with 32 MiB of storage in the XFS image (sparse when SPARSE is true),
# after copying the origin to $dir/NAME-at-take.raw (no writes run meanwhile).
take() {
  cp "$xfs/disk.raw" "$dir/$1-at-take.raw"
  cp "$xfs/disk.raw" "$dir/model.raw"
  local storage="[{\"path\":\"$xfs/$1.diff\",\"size\":$size,\"sparse\":${2:-false}}]"
  ctl "{\"command\":\"snapshot-create\",\"name\":\"$1\",\"origins\":[\"disk\"],\"storage\":$storage}" \
    "{\"command\":\"snapshot-take\",\"name\":\"$1\"}" >/dev/null || fail "take $1"
}
# write_both PATTERN OFFSET LENGTH: the same write through nbdsnapd and into the model of the origin.
write_both() {
  qemu-io -f raw -c "write -P $1 $2 $3" "$(uri disk)" >/dev/null || fail "origin write $*"
  qemu-io -f raw -c "write -P $1 $2 $3" "$dir/model.raw" >/dev/null
}
# writes: sequential 1 MiB writes over the first 8 MiB, then random writes of odd offsets and lengths, all
# below the last 2 MiB: the failed-clone case below writes there and needs a chunk no earlier write cloned (a
# random write that reached it made that case pass by without a clone, a flake seen in the TSan CI run).
writes=()
writes_after_take() {
  local i offset length
  writes=()
  for ((i = 0; i < 8; i++)); do writes+=("$((i << 20)) $((1 << 20))"); done
  for ((i = 0; i < 12; i++)); do
    offset=$(((RANDOM * 32768 + RANDOM) % (size - (2 << 20) - 70000)))
    length=$((1 + RANDOM * 2))
    writes+=("$offset $length")
  done
  i=0
  for w in "${writes[@]}"; do
    write_both "0x$(printf %02x $((0x40 + i)))" $w
    i=$((i + 1))
  done
}
# check_snapshot NAME: the image equals the copy made at the take, the origin equals the model.
check_snapshot() {
  nbdcopy "$(image_uri disk "$1")" "$dir/image.raw" || fail "nbdcopy of image $1"
  cmp "$dir/image.raw" "$dir/$1-at-take.raw" || fail "image $1 differs from the origin at the take"
  nbdcopy "$(uri disk)" "$dir/origin.raw" || fail "nbdcopy of the origin"
  cmp "$dir/origin.raw" "$dir/model.raw" || fail "the origin lacks the writes made after take $1"
  rm -f "$dir/image.raw" "$dir/origin.raw"
}
# shared_extents FILE: how many extents FIEMAP reports shared in FILE.
shared_extents() { filefrag -v "$1" | grep -c shared || true; }
# cbt_covers_writes NAME: the CBT map since checkpoint NAME covers every write made after that take.
cbt_covers_writes() {
  local map
  map=$(ctl "{\"command\":\"cbt-map\",\"origin\":\"disk\",\"since\":\"$1\"}") || fail "cbt-map since $1"
  "$PY" - "$map" "${writes[@]}" <<'EOF' || fail "CBT since $1 misses writes: $map"
import json, sys
ranges = json.loads(sys.argv[1])["ranges"]
for w in sys.argv[2:]:
    offset, length = map(int, w.split())
    for at in (offset, offset + length - 1):
        if not any(r["offset"] <= at < r["offset"] + r["length"] for r in ranges):
            sys.exit(f"byte {at} written after the take is not in the map")
EOF
}
snapshot_field() { jf "$(ctl "{\"command\":\"snapshot-info\",\"name\":\"$1\"}")" "r['snapshot']['$2']"; }

start_nbdsnapd --origin "disk=$xfs/disk.raw"

# 1. Fully allocated storage (the default): chunks are cloned, the image is the take-time data.
take s1
writes_after_take
check_snapshot s1
cbt_covers_writes s1
grep "origin 'disk' preserves chunks in $xfs/s1.diff by sharing extents" "$server_log" >/dev/null ||
  fail "the log does not say that chunks of disk were shared"
shared=$(shared_extents "$xfs/s1.diff")
((shared > 0)) || fail "no shared extents in s1.diff: $(filefrag -v "$xfs/s1.diff")"
[[ $(snapshot_field s1 state) == taken ]] || fail "s1 is not healthy"
ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null || fail "destroy s1"

# 2. A second snapshot, on sparse storage; then a clone failing with EPERM: the storage file is made immutable
#    while nbdsnapd holds it open. The origin write succeeds, the snapshot is corrupted with errno 1.
take s2 true
writes_after_take
check_snapshot s2
cbt_covers_writes s2
(($(shared_extents "$xfs/s2.diff") > 0)) || fail "no shared extents in sparse s2.diff"
chattr +i "$xfs/s2.diff"
write_both 0x77 $((size - (1 << 20))) 4096
chattr -i "$xfs/s2.diff"
nbdcopy "$(uri disk)" "$dir/origin.raw" || fail "nbdcopy of the origin"
cmp "$dir/origin.raw" "$dir/model.raw" || fail "the origin write that met a failed clone was lost"
[[ $(snapshot_field s2 state) == corrupted ]] || fail "s2 is not corrupted after a failed clone"
errors=$(ctl '{"command":"snapshot-info","name":"s2"}')
[[ $(jf "$errors" 'r["snapshot"]["origin_errors"][0]["errno"]') == 1 ]] || fail "s2's error is not EPERM: $errors"
[[ $(jf "$errors" '"sharing extents" in r["snapshot"]["corruption_reason"]') == True ]] ||
  fail "s2's reason does not name the clone: $errors"
if qemu-io -f raw -r -c "read 0 4096" "$(image_uri disk s2)" >/dev/null 2>&1; then
  fail "a read of the corrupted image s2 succeeded"
fi
ctl '{"command":"snapshot-destroy","name":"s2"}' >/dev/null || fail "destroy s2"
stop_server TERM

# 3. Origin and storage opened O_DIRECT: the same.
start_nbdsnapd --log direct --cache none --origin "disk=$xfs/disk.raw"
take s3
writes_after_take
check_snapshot s3
(($(shared_extents "$xfs/s3.diff") > 0)) || fail "no shared extents in s3.diff with --cache none"
ctl '{"command":"snapshot-destroy","name":"s3"}' >/dev/null || fail "destroy s3"
stop_server TERM

# 4. --reflink off copies: nothing shared, and the log says why.
start_nbdsnapd --log off --reflink off --origin "disk=$xfs/disk.raw"
take s4
writes_after_take
check_snapshot s4
(($(shared_extents "$xfs/s4.diff") == 0)) || fail "--reflink off shared extents: $(filefrag -v "$xfs/s4.diff")"
grep "origin 'disk' copies chunks to difference storage (reflink is off)" "$server_log" >/dev/null ||
  fail "the log does not say that reflink is off"
ctl '{"command":"snapshot-destroy","name":"s4"}' >/dev/null || fail "destroy s4"
pass "reflink: cloned chunks keep take-time images (allocated, sparse, O_DIRECT), a failed clone corrupts only"
