#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-file-dir-two-disks.sh — `file dir=` serving two disks: one snapshot of both, taken while writers run.
#
# The images must show, block by block, only data that may have been there at the take, and one point in
# time across both disks (see snapshot_under_writers.py). nbdinfo --list shows both origins and both images.
# Usage: test-file-dir-two-disks.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

mkdir "$dir/disks" "$dir/state"
truncate -s 32M "$dir/disks/a.img" "$dir/disks/b.img"
start_filter --log dir file dir="$dir/disks" nbdsnap-state-dir="$dir/state" nbdsnap-chunk-min-shift=16

"$PY" "$here/snapshot_under_writers.py" "$sock" "$ctl" "$dir/live.diff" a.img b.img
pass "snapshot of two disks under concurrent writers"

# A second snapshot, quiet this time, to see the export list with images in it.
ctl '{"command":"snapshot-create","name":"s2","origins":["a.img","b.img"],"storage":[{"path":"'"$dir"'/s2.diff","size":67108864}]}' >/dev/null
ctl '{"command":"snapshot-take","name":"s2"}' >/dev/null
list=$(nbdinfo --list --json "$(uri '')")
for name in a.img b.img a.img@s2 b.img@s2; do
  jq -e --arg n "$name" '.exports | map(."export-name") | index($n) != null' <<<"$list" >/dev/null ||
    fail "nbdinfo --list lacks $name: $list"
done
pass "nbdinfo --list shows origins and images"
ctl '{"command":"snapshot-destroy","name":"s2"}' >/dev/null

# An export name a URI path cannot hold as is: the reported URI is percent-encoded and works.
truncate -s 1M "$dir/disks/my disk.img"
nbdinfo --json "nbd+unix:///my%20disk.img?socket=$sock" >/dev/null
reported=$(ctl '{"command":"origin-info","name":"my disk.img"}' | jq -r .origin.uri)
[[ $reported == "nbd+unix:///my%20disk.img?socket=$sock" ]] || fail "uri of 'my disk.img': $reported"
[[ $(nbdinfo --size "$reported") == 1048576 ]] || fail "reported uri does not open the export"
pass "export URIs are percent-encoded"
[[ ! -e $dir/s2.diff ]] || fail "difference storage the engine created was not removed at destroy"
pass "destroy removes the difference storage it created"
