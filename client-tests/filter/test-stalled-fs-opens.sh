#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-stalled-fs-opens.sh — a file system that stops answering everything (FUSE, as a hung NFS server) holds
# up only the requests that need a file on it: new clients of exports on other disks are served at once while
#  1. a snapshot's difference storage is on it (every open looked at every descriptor of nbdkit through
#     /proc/self/fd, which asked that file system, with the filter's open lock held);
#  2. a client opens an export whose file is on it (the export's path was looked up with that lock held);
#  3. an origin whose file is on it is detached (its lock's descriptor was closed, which flushes to that file
#     system, with the filter's front-end lock held, which every open and close of a client needs).
# Once the file system answers, the waiting client and detach finish. Each of the three hung every new
# client of every file-backed export before the fix.
# Usage: test-stalled-fs-opens.sh FILTER.so. Skips (77) without root, /dev/fuse or python3-fusepy.
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"
stallable_fs
mkdir "$dir/disks" "$dir/state"
truncate -s 4M "$dir/disks/b" "$dir/disks/c" "$sfs/d.img" "$sfs/e.img"
ln -s "$sfs/d.img" "$dir/disks/d"
ln -s "$sfs/e.img" "$dir/disks/e"
start_filter file dir="$dir/disks" nbdsnap-state-dir="$dir/state"
ctl '{"command":"origins"}' >/dev/null || fail "the filter's origins"  # attaches b, c, d and e
ctl "{\"command\":\"snapshot-create\",\"name\":\"s\",\"origins\":[\"b\"],\"storage\":[{\"path\":\"$sfs/s.diff\",\"size\":$((8 << 20))}]}" \
  '{"command":"snapshot-take","name":"s"}' >/dev/null || fail "snapshot s with its storage on the FUSE file system"
timeout 10 nbdinfo "$(uri c)" >/dev/null || fail "export c before the stall"

stall_fs
_nap 3  # the kernel's cached attributes of the files there expire (FUSE: 1 s)
served_within_10s() {
  local started=$SECONDS
  timeout 10 nbdinfo "$(uri "$1")" >/dev/null || fail "a new client of export $1 waited for the stalled file system ($2)"
  pass "a new client of export $1 is served in $((SECONDS - started)) s ($2)"
}
served_within_10s c "storage of snapshot s on it"
timeout 120 nbdinfo "$(uri d)" >"$dir/d.out" 2>&1 &
d_client=$!
track_pid "$d_client"
_nap 1
kill -0 "$d_client" 2>/dev/null || fail "a client of export d, whose file stalls, did not wait: $(cat "$dir/d.out")"
served_within_10s c "a client of export d waits for it"
ctl_waiting detach-e '{"command":"origin-detach","name":"e","force":true}'
_nap 1
still_waiting detach-e "origin e's file system stalled"
served_within_10s c "origin e's detach waits for it"
served_within_10s b@s "the image of b, whose storage stalls, is opened all the same"

unstall_fs
wait "$d_client" || fail "the client of export d failed once its file system answered: $(cat "$dir/d.out")"
ctl_waited detach-e
ctl '{"command":"snapshot-destroy","name":"s"}' >/dev/null || fail "destroy s"
pass "once the file system answers, the client of d and the detach of e finish"
