#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-error-cow.sh — the plugin fails the copy-on-write read (nbdkit's error filter below ours): the client's
# write still succeeds, the snapshot turns corrupted with an event carrying the origin and the errno (EIO), as
# snapshot info does per origin, and its image returns errors.
# Usage: test-error-cow.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

disk=$dir/disk.img
truncate -s 16M "$disk"
qemu-io -f raw -c 'write -P 0x11 0 16M' "$disk" >/dev/null
# Reads fail only while $dir/inject exists.
start_filter --log error --filter=error file "$disk" error-pread-rate=100% error-pread-file="$dir/inject"

qemu-io -f raw -r -c 'read -P 0x11 0 4K' "$(uri '')" >/dev/null  # attach the origin
ctl '{"command":"snapshot-create","name":"s","origins":["default"],"storage":[{"path":"'"$dir"'/s.diff","size":16777216}]}' >/dev/null
ctl '{"command":"snapshot-take","name":"s"}' >/dev/null
qemu-io -f raw -r -c 'read -P 0x11 0 1M' "$(uri default@s)" >/dev/null || fail "healthy image unreadable"

touch "$dir/inject"
qemu-io -f raw -c 'write -P 0xcc 0 64K' "$(uri '')" >/dev/null || fail "the origin write failed with the snapshot"
rm "$dir/inject"
qemu-io -f raw -r -c 'read -P 0xcc 0 64K' "$(uri '')" >/dev/null || fail "the origin write was lost"
pass "origin write succeeds although copy-on-write could not read the old data"

info=$(ctl '{"command":"snapshot-info","name":"s"}')
[[ $(jq -r .snapshot.state <<<"$info") == corrupted ]] || fail "snapshot not corrupted: $info"
events=$(ctl '{"command":"events-wait","after":0}')
jq -e '.events | map(select(.type == "corrupted" and .snapshot == "s")) | length == 1' <<<"$events" >/dev/null ||
  fail "no corrupted event: $events"
jq -e '.events[] | select(.type == "corrupted") | .origin == "default" and .errno == 5 and .error == "Input/output error"' \
  <<<"$events" >/dev/null || fail "the corrupted event lacks the origin or errno: $events"
jq -e '.snapshot.origin_errors == [{"origin": "default", "errno": 5, "error": "Input/output error",
        "reason": .snapshot.origin_errors[0].reason}] and
       (.snapshot.origin_errors[0].reason | test("read of the origin failed"))' <<<"$info" >/dev/null ||
  fail "snapshot info lacks the origin's errno: $info"
pass "snapshot is corrupted, with an event; both give the origin and its errno"

if qemu-io -f raw -r -c 'read 0 64K' "$(uri default@s)" >/dev/null 2>&1; then fail "corrupted image read back data"; fi
if qemu-io -f raw -r -c 'read 8M 64K' "$(uri default@s)" >/dev/null 2>&1; then
  fail "corrupted image served unchanged data"
fi
pass "the corrupted snapshot's image returns errors"
ctl '{"command":"snapshot-destroy","name":"s"}' >/dev/null

# A writable image whose chunk must first be read from the origin, while that read fails: the write fails at
# once (it hung for ever before: the chunk map re-locked its own mutex), the snapshot is corrupted with the
# reason, and destroy works (issue 15, part 1).
ctl '{"command":"snapshot-create","name":"w","origins":["default"],"writable":true,"storage":[{"path":"'"$dir"'/w.diff","size":16777216}]}' >/dev/null
ctl '{"command":"snapshot-take","name":"w"}' >/dev/null
touch "$dir/inject"
started=$SECONDS
if timeout 30 qemu-io -f raw -c 'write -P 0x77 0 4k' "$(uri default@w)" >"$dir/w.out" 2>&1; then
  fail "a writable image write succeeded although its chunk could not be read: $(cat "$dir/w.out")"
fi
(( SECONDS - started < 20 )) || fail "the writable image write hung ($(( SECONDS - started )) s)"
grep -q "Input/output error" "$dir/w.out" || fail "the write did not fail with EIO: $(cat "$dir/w.out")"
rm "$dir/inject"
info=$(ctl '{"command":"snapshot-info","name":"w"}')
[[ $(jq -r .snapshot.state <<<"$info") == corrupted ]] || fail "snapshot w not corrupted: $info"
jq -e '.snapshot.corruption_reason | test("read of the origin failed")' <<<"$info" >/dev/null ||
  fail "the corruption reason does not name the failed read: $info"
ctl '{"command":"snapshot-destroy","name":"w"}' >/dev/null
qemu-io -f raw -c 'write -P 0x78 0 4k' "$(uri '')" >/dev/null || fail "the origin is not writable after destroy"
pass "a writable image write with a failing origin read fails at once; destroy works"
