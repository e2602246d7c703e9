#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-attach-on-frozen-state-dir.sh — an origin-attach whose CBT state file is on a frozen file system (the
# state directory on a hung NFS server) holds up only the requests that need that origin (invariant 5).
# While the attach of origin n waits to save n's CBT state, snapshot b of another origin is taken, its origin
# written and its image read through NBD, and the engine answers origin-info and snapshot-info at once; an
# attach or detach of n is refused with busy at once; once the file system thaws, the attach finishes and n
# is served. Before the fix the attach held the engine's
# control lock across the CBT save, and every control request waited for the file system.
# Usage: test-attach-on-frozen-state-dir.sh NBDSNAPD. Skips (77) without root, mkfs.ext4, fsfreeze, qemu-io or
# a loop mount.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
requires qemu-io --version
freezable_fs 64M

truncate -s 4M "$dir/o.raw" "$dir/p.raw" "$dir/n.raw" "$dir/o2.raw"
start_nbdsnapd --log nbdsnapd --state-dir "$fs/state" --origin "o=$dir/o.raw" --origin "p=$dir/p.raw"
ctl "{\"command\":\"snapshot-create\",\"name\":\"b\",\"origins\":[\"p\"],\"storage\":[{\"path\":\"$dir/b.diff\",\"size\":$((8 << 20))}]}" \
  >/dev/null || fail "create b"
timeout 30 qemu-io -f raw -c 'write -P 0x11 0 64k' "$(uri p)" >/dev/null || fail "a write before the take"

freeze_fs
ctl_waiting attach "{\"command\":\"origin-attach\",\"name\":\"n\",\"path\":\"$dir/n.raw\"}"
_nap 1
still_waiting attach "its state directory was frozen"

timeout 10 "$PY" -m nbdsnap "$ctl" '{"command":"snapshot-take","name":"b"}' \
  '{"command":"snapshot-info","name":"b"}' '{"command":"origin-info","name":"o"}' >"$dir/b.out" 2>&1 ||
  fail "snapshot b or info waited for the attach's frozen state directory: $(cat "$dir/b.out")"
timeout 10 qemu-io -f raw -c 'write -P 0x22 0 64k' "$(uri p)" >/dev/null ||
  fail "a write to origin p waited for the attach's frozen state directory"
timeout 10 qemu-io -r -f raw -c 'read -P 0x11 0 64k' "$(image_uri p b)" >/dev/null ||
  fail "image p@b does not serve the data of the take while the attach waits"
for request in "{\"command\":\"origin-attach\",\"name\":\"n\",\"path\":\"$dir/o2.raw\"}" \
  '{"command":"origin-detach","name":"n","force":true}'; do
  reply=$(timeout 10 "$PY" -m nbdsnap --expect-error "$ctl" "$request") ||
    fail "$request did not fail at once: $reply"
  grep "origin 'n' is being attached" <<<"$reply" >/dev/null ||
    fail "$request: the refusal does not say that n is being attached: $reply"
done
still_waiting attach "its state directory was frozen"
pass "while an attach waits for its frozen state directory, snapshot b is taken and served, and info answers"

thaw_fs
ctl_waited attach
timeout 30 qemu-io -f raw -c 'write -P 0x33 0 64k' "$(uri n)" >/dev/null || fail "a write to n after its attach"
ctl '{"command":"snapshot-destroy","name":"b"}' '{"command":"origin-info","name":"n"}' >/dev/null ||
  fail "b and n after the thaw"
pass "once the file system thaws, the attach finishes and origin n is served"
