#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-reflink-full-fs.sh — invariant 2 with extent sharing (core/extent_clone.h) on a full file system: origin
# and difference storage on a small XFS image made with reflink=1, a snapshot taken, then the file system
# filled to the last block by another file. A cloned chunk shares its blocks with the storage slot, so the
# origin's next write there needs new blocks (copy-on-write in the file system) where an overwrite in place
# needed none: nbdsnapd must give the shared blocks up (the snapshot is corrupted with ENOSPC, its image
# reads fail) and the origin write must succeed — with sparse storage (no block given back by the clone) and
# with fully allocated storage (the blocks it gives back may not cover the write); with --cache writeback and
# none; sequential 1 MiB writes and 16 connections writing into the same chunks at once (each writer that met
# ENOSPC must write again once another has given the blocks up). Before the fix every
# origin write failed with ENOSPC and the snapshot stayed healthy. Skips (77) when not root or the image
# cannot be made or mounted.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
requires_root
requires mkfs.xfs -V

xfs=$dir/xfs
mkdir "$xfs"
truncate -s 320M "$dir/xfs.img"  # near the smallest XFS mkfs.xfs makes
mkfs.xfs -q -m reflink=1 "$dir/xfs.img" || skip "mkfs.xfs -m reflink=1 failed"
mount -o loop "$dir/xfs.img" "$xfs" 2>/dev/null || skip "cannot loop-mount an XFS image"
unmount_xfs() {
  [[ -z $server_pid ]] || stop_server TERM
  umount "$xfs" || umount -l "$xfs"
}
cleanup_fn unmount_xfs

size=$((16 << 20))
head -c $size /dev/urandom >"$xfs/disk.raw"
snapshot_field() { jf "$(ctl "{\"command\":\"snapshot-info\",\"name\":\"$1\"}")" "r['snapshot']['$2']"; }

# fill: another program takes every free block of the file system (a big fallocate, then small writes until
# ENOSPC), as a log or a database beside the origin might.
fill() {
  local avail
  avail=$(df --output=avail -k "$xfs" | sed -n 2p)
  fallocate -l "$(((avail - 1024) * 1024))" "$xfs/filler" 2>/dev/null || true
  dd if=/dev/zero of="$xfs/filler2" bs=4k status=none 2>/dev/null || true
  sync
}

for cache in writeback none; do
  start_nbdsnapd --log "$cache" --cache "$cache" --origin "disk=$xfs/disk.raw"
  for sparse in true false; do
    name=s-$sparse
    cp "$xfs/disk.raw" "$dir/model.raw"
    cp "$xfs/disk.raw" "$dir/$name-at-take.raw"
    ctl "{\"command\":\"snapshot-create\",\"name\":\"$name\",\"origins\":[\"disk\"],\"storage\":[{\"path\":\"$xfs/$name.diff\",\"size\":$size,\"sparse\":$sparse}]}" \
      "{\"command\":\"snapshot-take\",\"name\":\"$name\"}" >/dev/null || fail "take $name"
    fill
    # 16 connections at once write 4 KiB pieces over the second 8 MiB, all of them into the same chunks first:
    # writers of one chunk meet ENOSPC together, and each must write once the first has given the blocks up.
    "$PY" - "$(uri disk)" "$dir/model.raw" <<'EOF' || fail "concurrent origin writes failed (cache $cache, sparse $sparse)"
import sys, threading
import nbd
uri, model_path = sys.argv[1:3]
errors = []
def writer(t):
    h = nbd.NBD()
    h.connect_uri(uri)
    for j in range(128):
        try:
            h.pwrite(bytes([0x80 + t]) * 4096, (8 << 20) + (j * 16 + t) * 4096)
        except nbd.Error as e:
            errors.append(f"writer {t}: {e}")
            return
threads = [threading.Thread(target=writer, args=(t,)) for t in range(16)]
for t in threads: t.start()
for t in threads: t.join(120)
with open(model_path, "r+b") as model:
    for t in range(16):
        for j in range(128):
            model.seek((8 << 20) + (j * 16 + t) * 4096)
            model.write(bytes([0x80 + t]) * 4096)
if errors:
    sys.exit("; ".join(errors[:4]))
EOF
    # Then 1 MiB writes over the first 8 MiB.
    for ((i = 0; i < 8; i++)); do
      qemu-io -f raw -c "write -P 0x5$i $((i << 20)) 1M" "$(uri disk)" >"$dir/w.log" 2>&1 ||
        fail "origin write $i of 1 MiB failed (cache $cache, sparse $sparse): $(cat "$dir/w.log")"
      qemu-io -f raw -c "write -P 0x5$i $((i << 20)) 1M" "$dir/model.raw" >/dev/null
    done
    qemu-io -f raw -c "flush" "$(uri disk)" >/dev/null || fail "flush of the origin failed (cache $cache, sparse $sparse)"
    nbdcopy "$(uri disk)" "$dir/origin.raw" || fail "nbdcopy of the origin"
    cmp "$dir/origin.raw" "$dir/model.raw" || fail "the origin lacks writes made on the full file system"
    # Sparse storage gave no block back, so the origin's copy-on-write met ENOSPC and the snapshot gave way.
    # Allocated storage gave its slots' blocks back: whether that covered the origin's writes depends on the
    # file system's reservations (buffered writes reserve more than O_DIRECT ones); either the snapshot gave
    # way, or it is whole.
    snapshot_state=$(snapshot_field "$name" state)
    if [[ $sparse == true || $snapshot_state == corrupted ]]; then
      [[ $snapshot_state == corrupted ]] || fail "$name is not corrupted after it gave up its blocks"
      info=$(ctl "{\"command\":\"snapshot-info\",\"name\":\"$name\"}")
      [[ $(jf "$info" 'r["snapshot"]["origin_errors"][0]["errno"]') == 28 ]] || fail "$name's error is not ENOSPC: $info"
      if qemu-io -f raw -r -c "read 0 4096" "$(image_uri disk "$name")" >/dev/null 2>&1; then
        fail "a read of the corrupted image $name succeeded"
      fi
    else
      nbdcopy "$(image_uri disk "$name")" "$dir/image.raw" || fail "nbdcopy of the healthy image $name"
      cmp "$dir/image.raw" "$dir/$name-at-take.raw" || fail "the healthy image $name differs from the take"
    fi
    ctl "{\"command\":\"snapshot-destroy\",\"name\":\"$name\"}" >/dev/null || fail "destroy $name"
    echo "cache $cache, sparse $sparse: $snapshot_state"
    rm -f "$xfs/filler" "$xfs/filler2" "$dir/origin.raw" "$dir/image.raw" "$dir/$name-at-take.raw"
  done
  stop_server TERM
done
pass "reflink on a full file system: origin writes succeed, the snapshot gives its shared blocks up (corrupted)"
