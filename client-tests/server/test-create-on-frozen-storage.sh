#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-create-on-frozen-storage.sh — a snapshot-create or snapshot-append-storage whose new file is on a frozen
# file system (as on a hung NFS server) holds up only the requests that need that snapshot (invariant 5).
# While create A and an append to snapshot T wait for the frozen file system, snapshot B of another origin is
# created, taken and destroyed, and a create of A's name or a destroy of T is refused with busy at once; once
# the file system thaws, both finish. Before the fix every control request waited for the file system.
# Usage: test-create-on-frozen-storage.sh NBDSNAPD. Skips (77) without root, mkfs.ext4, fsfreeze or a loop mount.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
freezable_fs 64M

truncate -s 4M "$dir/o.raw" "$dir/p.raw" "$dir/q.raw"
start_nbdsnapd --log nbdsnapd --origin "o=$dir/o.raw" --origin "p=$dir/p.raw" --origin "q=$dir/q.raw"
ctl "{\"command\":\"snapshot-create\",\"name\":\"t\",\"origins\":[\"q\"],\"storage\":[{\"path\":\"$dir/t.diff\",\"size\":$((8 << 20))}]}" \
  >/dev/null || fail "create t"

freeze_fs
ctl_waiting create \
  "{\"command\":\"snapshot-create\",\"name\":\"a\",\"origins\":[\"o\"],\"storage\":[{\"path\":\"$fs/a.diff\",\"size\":$((8 << 20))}]}"
ctl_waiting append \
  "{\"command\":\"snapshot-append-storage\",\"name\":\"t\",\"path\":\"$fs/t2.diff\",\"size\":$((8 << 20))}"
_nap 1
still_waiting create "its storage was frozen"
still_waiting append "its storage was frozen"

timeout 10 "$PY" -m nbdsnap "$ctl" \
  "{\"command\":\"snapshot-create\",\"name\":\"b\",\"origins\":[\"p\"],\"storage\":[{\"path\":\"$dir/b.diff\",\"size\":$((8 << 20))}]}" \
  '{"command":"snapshot-take","name":"b"}' '{"command":"snapshot-destroy","name":"b"}' >"$dir/b.out" 2>&1 ||
  fail "snapshot b waited for the frozen storage of a create or an append: $(cat "$dir/b.out")"
reply=$(timeout 10 "$PY" -m nbdsnap --expect-error "$ctl" \
  "{\"command\":\"snapshot-create\",\"name\":\"a\",\"origins\":[\"p\"],\"storage\":[{\"path\":\"$dir/a2.diff\",\"size\":$((8 << 20))}]}") ||
  fail "a create of name a did not fail at once: $reply"
grep -q "being created" <<<"$reply" || fail "the refusal does not say snapshot a is being created: $reply"
reply=$(timeout 10 "$PY" -m nbdsnap --expect-error "$ctl" '{"command":"snapshot-destroy","name":"t"}') ||
  fail "a destroy of t did not fail at once: $reply"
grep -q "being appended" <<<"$reply" || fail "the refusal does not say snapshot t is being appended: $reply"
pass "while a create and an append wait for their frozen storage, snapshot b lives and dies, and a and t are busy"

thaw_fs
ctl_waited create
ctl_waited append
ctl '{"command":"snapshot-take","name":"a"}' '{"command":"snapshot-destroy","name":"a"}' \
  '{"command":"snapshot-destroy","name":"t"}' >/dev/null || fail "a and t after the thaw"
[[ ! -e $fs/a.diff && ! -e $fs/t2.diff ]] || fail "storage files left on the thawed file system"
pass "once the file system thaws, the create and the append finish, and their storage goes with the snapshots"
