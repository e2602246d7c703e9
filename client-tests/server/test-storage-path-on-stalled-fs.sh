#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-storage-path-on-stalled-fs.sh — a snapshot-create or snapshot-append-storage naming storage on a file
# system that stops answering even lookups (FUSE, as a hung NFS server) holds up only itself (invariant 5):
# resolving the path (symbolic links, "..") asks that file system, so it must happen without the engine's
# locks. While both wait, the control socket answers, a new NBD connection is served, and snapshot b lives
# and dies; once the file system answers, both calls answer too. Before the fix the path was resolved with
# the engine's locks held, and every control request and every new connection waited for the file system.
# Usage: test-storage-path-on-stalled-fs.sh NBDSNAPD. Skips (77) without root, /dev/fuse or python3-fusepy.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
stallable_fs

truncate -s 4M "$dir/o.raw" "$dir/p.raw" "$dir/q.raw"
start_nbdsnapd --origin "o=$dir/o.raw" --origin "p=$dir/p.raw" --origin "q=$dir/q.raw"
storage() { echo "[{\"path\":\"$1\",\"size\":$((8 << 20))}]"; }
ctl "{\"command\":\"snapshot-create\",\"name\":\"t\",\"origins\":[\"q\"],\"storage\":$(storage "$sfs/t.diff")}" \
  >/dev/null || fail "create t with storage on the FUSE file system while it answers"

stall_fs
# Names nothing has looked up yet: the kernel must ask the stalled file system.
ctl_waiting create \
  "{\"command\":\"snapshot-create\",\"name\":\"a\",\"origins\":[\"o\"],\"storage\":$(storage "$sfs/a.diff")}"
ctl_waiting append \
  "{\"command\":\"snapshot-append-storage\",\"name\":\"t\",\"path\":\"$sfs/t2.diff\",\"size\":$((8 << 20))}"
_nap 1
still_waiting create "its file system stalled"
still_waiting append "its file system stalled"

timeout 10 "$PY" -m nbdsnap "$ctl" '{"command":"origins"}' >/dev/null ||
  fail "the control socket waited for a storage path's stalled file system"
timeout 10 nbdinfo "$(uri p)" >/dev/null || fail "a new NBD connection waited for a storage path's file system"
timeout 10 "$PY" -m nbdsnap "$ctl" \
  "{\"command\":\"snapshot-create\",\"name\":\"b\",\"origins\":[\"p\"],\"storage\":$(storage "$dir/b.diff")}" \
  '{"command":"snapshot-take","name":"b"}' '{"command":"snapshot-destroy","name":"b"}' >"$dir/b.out" 2>&1 ||
  fail "snapshot b waited for the stalled storage path of a create or an append: $(cat "$dir/b.out")"
timeout 10 "$PY" -m nbdsnap "$ctl" '{"command":"snapshot-info","name":"t"}' >/dev/null ||
  fail "snapshot t, whose append waits for its path, did not answer"
still_waiting create "its file system stalled"
pass "while a create and an append wait for a stalled file system, the server answers and serves"

unstall_fs
ctl_waited create
ctl_waited append
ctl '{"command":"snapshot-take","name":"a"}' '{"command":"snapshot-destroy","name":"a"}' \
  '{"command":"snapshot-destroy","name":"t"}' >/dev/null || fail "a and t once the file system answers"
[[ ! -e $sfs/a.diff && ! -e $sfs/t.diff && ! -e $sfs/t2.diff ]] || fail "storage files left behind"
pass "once the file system answers, the create and the append finish"
