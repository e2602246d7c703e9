#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-origin-enospc-same-fs.sh — invariant 2 when the origin and a snapshot's sparse difference storage share
# one small file system (ext4 on a loop device, no extent sharing): copy-on-write fills the file system, and an
# origin write that then needs a block meets ENOSPC. The snapshot must give way: it is corrupted (ENOSPC), gives
# back the storage it created (its image fails from then on), and every origin write succeeds — through nbdsnapd
# (origin a file the engine sees) and through the nbdkit filter (origin a plugin export, file system unknown to
# the engine). Before the fix 25 of 32 writes failed and kept failing until snapshot-destroy.
# Usage: test-origin-enospc-same-fs.sh nbdsnapd|filter BINARY. Skips (77) when not root, or when the file
# system cannot be made or loop-mounted.
source "$(dirname "$0")/../functions.sh"
use_front_end "${1:?usage: $0 nbdsnapd|filter BINARY}" "${2:?usage: $0 nbdsnapd|filter BINARY}"
requires_root
requires mkfs.ext4 -V

fs=$dir/fs
mkdir "$fs"
truncate -s 16M "$dir/fs.img"
mkfs.ext4 -q -F "$dir/fs.img" || skip "mkfs.ext4 failed"
timeout 30 mount -o loop "$dir/fs.img" "$fs" 2>/dev/null || skip "cannot loop-mount an ext4 image"
unmount_fs() {
  [[ -z $server_pid ]] || stop_server TERM
  timeout 30 umount "$fs" || timeout 30 umount -l "$fs"
}
cleanup_fn unmount_fs

truncate -s 8M "$fs/disk.raw"  # sparse: each origin write below needs a block of its own
truncate -s 8M "$dir/model.raw"
if [[ $FRONT_END == nbdsnapd ]]; then
  start_server --log nbdsnapd --chunk-buffer-budget 0 --origin "disk=$fs/disk.raw"
  origin=disk
  origin_uri=$(uri disk)
else
  start_server --log filter file "$fs/disk.raw" nbdsnap-state-dir="$dir/state" nbdsnap-chunk-buffer-budget=0
  origin=default
  origin_uri=$(uri '')
fi

ctl "{\"command\":\"snapshot-create\",\"name\":\"s\",\"origins\":[\"$origin\"],\"storage\":[{\"path\":\"$fs/s.diff\",\"size\":$((32 << 20)),\"sparse\":true}]}" \
  '{"command":"snapshot-take","name":"s"}' >/dev/null || fail "take"
# Another program leaves 1 MiB free: copy-on-write of a few chunks takes the rest.
avail=$(df --output=avail -k "$fs" | sed -n 2p)
((avail > 1024)) && fallocate -l "$(((avail - 1024) * 1024))" "$fs/filler"

# 32 writes of 4 KiB into 32 chunks (chunks are at most 256 KiB), each flushed; the same into the model.
timeout 120 "$PY" - "$origin_uri" "$dir/model.raw" <<'PYEOF' || fail "origin writes failed on the full file system ($FRONT_END)"
import sys
import nbd
uri, model_path = sys.argv[1:3]
h = nbd.NBD()
h.connect_uri(uri)
failed = []
with open(model_path, "r+b") as model:
    for i in range(32):
        data = bytes([0x40 + i]) * 4096
        try:
            h.pwrite(data, i * (256 << 10))
            h.flush()
        except nbd.Error as e:
            failed.append(f"write {i}: {e}")
            continue
        model.seek(i * (256 << 10))
        model.write(data)
h.shutdown()
if failed:
    sys.exit(f"{len(failed)} of 32 failed: " + "; ".join(failed[:3]))
PYEOF

timeout 60 nbdcopy "$origin_uri" "$dir/origin.raw" || fail "nbdcopy of the origin"
cmp "$dir/origin.raw" "$dir/model.raw" || fail "the origin lacks writes made on the full file system ($FRONT_END)"
info=$(ctl '{"command":"snapshot-info","name":"s"}')
[[ $(jf "$info" 'r["snapshot"]["state"]') == corrupted ]] || fail "the snapshot is not corrupted: $info"
[[ $(jf "$info" 'r["snapshot"]["origin_errors"][0]["errno"]') == 28 ]] || fail "the snapshot's error is not ENOSPC: $info"
if timeout 30 qemu-io -f raw -r -c "read 0 4096" "$(image_uri "$origin" s)" >/dev/null 2>&1; then
  fail "a read of the corrupted image succeeded"
fi
ctl '{"command":"snapshot-destroy","name":"s"}' >/dev/null || fail "destroy"
stop_server TERM
pass "$FRONT_END: origin writes succeed on a file system full of the snapshot's storage; the snapshot gave it up"
