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
# ENOSPC must write again once another has given the blocks up); and with every punch refused (a preloaded
# fallocate; XFS itself refuses one now and then on a full file system), when the snapshot's files are emptied
# instead. Before the fixes every origin write failed with ENOSPC and the snapshot stayed healthy. Skips (77) when not root or the image
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

# concurrent_writes: 16 connections at once write 4 KiB pieces over the second 8 MiB of disk, all of them into
# the same chunks first; the same writes go into $dir/model.raw.
concurrent_writes() {
  "$PY" - "$(uri disk)" "$dir/model.raw" <<'EOF'
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
    concurrent_writes || fail "concurrent origin writes failed (cache $cache, sparse $sparse)"
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
# A punch of a slot can itself fail with ENOSPC on a full file system (XFS reserves blocks for it; seen in 2 of
# 10 runs above before the fix): made certain here by a preloaded fallocate that refuses every punch, the
# files the snapshot created are emptied instead and the origin writes still succeed.
if command -v cc >/dev/null; then
  cat >"$dir/no-punch.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
static int refuse_punch(int fd, int mode, off_t offset, off_t len, const char *name) {
  if (mode & FALLOC_FL_PUNCH_HOLE) {
    errno = ENOSPC;
    return -1;
  }
  int (*real)(int, int, off_t, off_t) = (int (*)(int, int, off_t, off_t))dlsym(RTLD_NEXT, name);
  return real(fd, mode, offset, len);
}
int fallocate(int fd, int mode, off_t offset, off_t len) { return refuse_punch(fd, mode, offset, len, "fallocate"); }
int fallocate64(int fd, int mode, off_t offset, off_t len) { return refuse_punch(fd, mode, offset, len, "fallocate64"); }
EOF
  cc -shared -fPIC -o "$dir/no-punch.so" "$dir/no-punch.c" -ldl || fail "cannot build the fallocate shim"
  LD_PRELOAD=$dir/no-punch.so${LD_PRELOAD:+:$LD_PRELOAD} ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
    start_nbdsnapd --log no-punch --origin "disk=$xfs/disk.raw"
  cp "$xfs/disk.raw" "$dir/model.raw"
  ctl "{\"command\":\"snapshot-create\",\"name\":\"np\",\"origins\":[\"disk\"],\"storage\":[{\"path\":\"$xfs/np.diff\",\"size\":$size,\"sparse\":true}]}" \
    '{"command":"snapshot-take","name":"np"}' >/dev/null || fail "take np"
  fill
  concurrent_writes || fail "origin writes failed when no slot could be punched"
  nbdcopy "$(uri disk)" "$dir/origin.raw" || fail "nbdcopy of the origin"
  cmp "$dir/origin.raw" "$dir/model.raw" || fail "the origin lacks writes made while no slot could be punched"
  [[ $(snapshot_field np state) == corrupted ]] || fail "np is not corrupted"
  echo "no punch: origin writes succeeded"
  stop_server TERM
fi
pass "reflink on a full file system: origin writes succeed, the snapshot gives its shared blocks up (corrupted), also when no slot can be punched"
