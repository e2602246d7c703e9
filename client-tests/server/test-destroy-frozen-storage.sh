#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-destroy-frozen-storage.sh — a destroy that waits for a stalled disk holds up only its own snapshot
# (invariant 5). Snapshot A's difference storage is on a file system frozen with fsfreeze, as a hung NFS
# server or iSCSI disk would be: an origin write's copy-on-write waits there, and so does snapshot-destroy A.
# Meanwhile another snapshot of another origin is created, taken and destroyed, and what needs A (a create
# with its origin) is refused with busy at once; once the disk answers, the write and the destroy finish.
# Before the fix every control request waited for the disk (found by a hostile tester).
# Usage: test-destroy-frozen-storage.sh NBDSNAPD. Skips (77) without root, mkfs.ext4, fsfreeze or a loop mount.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
freezable_fs 32M

truncate -s 4M "$dir/o.raw" "$dir/p.raw"
start_nbdsnapd --log nbdsnapd --chunk-buffer-budget 0 --origin "o=$dir/o.raw" --origin "p=$dir/p.raw"
ctl "{\"command\":\"snapshot-create\",\"name\":\"a\",\"origins\":[\"o\"],\"storage\":[{\"path\":\"$fs/a.diff\",\"size\":$((8 << 20))}]}" \
  '{"command":"snapshot-take","name":"a"}' >/dev/null || fail "take a"

freeze_fs
# The write's copy-on-write waits for the frozen file system; so does the destroy that drains it.
timeout 120 qemu-io -f raw -c 'write -P 0x77 0 64k' "$(uri o)" >"$dir/write.out" 2>&1 &
writer=$!
track_pid "$writer"
_nap 1
timeout 120 "$PY" -m nbdsnap "$ctl" '{"command":"snapshot-destroy","name":"a"}' >"$dir/destroy.out" 2>&1 &
destroyer=$!
track_pid "$destroyer"
for ((i = 0; i < 100; i++)); do
  ctl_error '{"command":"snapshot-info","name":"a"}' >/dev/null 2>&1 && break  # out of the registry
  _nap 0.1
done
kill -0 "$destroyer" 2>/dev/null || fail "snapshot-destroy a returned while its storage was frozen: $(cat "$dir/destroy.out")"

timeout 10 "$PY" -m nbdsnap "$ctl" \
  "{\"command\":\"snapshot-create\",\"name\":\"b\",\"origins\":[\"p\"],\"storage\":[{\"path\":\"$dir/b.diff\",\"size\":$((8 << 20))}]}" \
  '{"command":"snapshot-take","name":"b"}' '{"command":"snapshot-destroy","name":"b"}' >"$dir/b.out" 2>&1 ||
  fail "snapshot b waited for a's frozen storage: $(cat "$dir/b.out")"
reply=$(timeout 10 "$PY" -m nbdsnap --expect-error "$ctl" \
  "{\"command\":\"snapshot-create\",\"name\":\"c\",\"origins\":[\"o\"],\"storage\":[{\"path\":\"$dir/c.diff\",\"size\":$((8 << 20))}]}") ||
  fail "a create with origin o did not fail at once: $reply"
grep -q "being destroyed" <<<"$reply" || fail "the refusal does not say snapshot a is being destroyed: $reply"
pass "while destroy a waits for its frozen storage, snapshot b lives and dies, and origin o is refused as busy"

thaw_fs
wait "$writer" || fail "the origin write failed: $(cat "$dir/write.out")"
wait "$destroyer" || fail "snapshot-destroy a failed: $(cat "$dir/destroy.out")"
file_holds "$dir/o.raw" 0 64K 0x77 || fail "the origin lacks the write made while the storage was frozen"
ctl "{\"command\":\"snapshot-create\",\"name\":\"c\",\"origins\":[\"o\"],\"storage\":[{\"path\":\"$dir/c.diff\",\"size\":$((8 << 20))}]}" \
  '{"command":"snapshot-destroy","name":"c"}' >/dev/null || fail "origin o is not free after the destroy"
pass "once the file system thaws, the write and the destroy finish and origin o is free"
