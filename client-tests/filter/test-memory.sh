#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-memory.sh — the `memory` plugin: a snapshot of a RAM disk, a writable snapshot whose writes never reach
# the origin, the export list, and refusals (unknown origin, origin in a snapshot twice).
# Usage: test-memory.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

help=$(${NBDSNAP_NBDKIT_PRELOAD:+env LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit --filter="$FILTER" memory --help)
for parameter in control state-dir storage storage-limit default-origin chunk-min-shift tracking-block-min-shift; do
  grep -q "nbdsnap-$parameter=" <<<"$help" || fail "--help does not document nbdsnap-$parameter"
done
pass "nbdkit --filter=nbdsnap --help documents every parameter"

truncate -s 32M "$dir/one.diff"  # nbdsnap-storage must exist: a file used as is
start_filter --log memory memory size=16M nbdsnap-default-origin=ram nbdsnap-chunk-min-shift=16 \
  nbdsnap-storage="$dir/one.diff:32M"
qemu-io -f raw -c 'write -P 0x5a 0 16M' "$(uri '')" >/dev/null
qemu-img convert -f raw -O raw "$(uri ram)" "$dir/take-time.img"  # "ram" and "" are the same origin

ctl_error '{"command":"snapshot-create","name":"x","origins":["nosuch"],"storage":[{"path":"'"$dir"'/x","size":1048576}]}' >/dev/null
ctl '{"command":"snapshot-create","name":"ro","origins":["ram"]}' >/dev/null  # default storage: one.diff
storage=$(ctl '{"command":"snapshot-info","name":"ro"}' | jq -r '.snapshot.storage[0].path')
[[ $storage == "$dir/one.diff" ]] || fail "default difference storage file not used: $storage"
reply=$(ctl_error '{"command":"snapshot-create","name":"second","origins":[]}')
grep -q "in use by snapshot 'ro'" <<<"$reply" || fail "default storage file handed to two snapshots: $reply"
ctl_error '{"command":"snapshot-create","name":"again","origins":["ram"],"storage":[{"path":"'"$dir"'/a","size":1048576}]}' >/dev/null
ctl '{"command":"snapshot-take","name":"ro"}' >/dev/null
pass "snapshot-create refuses unknown origins, an origin already in a snapshot, and a busy default storage file"

qemu-io -f raw -c 'write -P 0x66 1M 3M' "$(uri '')" >/dev/null
qemu-img compare -f raw -F raw "$dir/take-time.img" "$(uri ram@ro)" >/dev/null || fail "ram@ro differs from the copy"
pass "image of the memory plugin's disk equals the take-time copy"

list=$(nbdinfo --list --json "$(uri '')")
jq -e '.exports | map(."export-name") | (index("") != null and index("ram@ro") != null)' <<<"$list" >/dev/null ||
  fail "nbdinfo --list: $list"
pass "nbdinfo --list shows the plugin's export and the image"

# A writable snapshot: its image takes writes into difference storage; the origin never sees them.
ctl '{"command":"snapshot-destroy","name":"ro"}' >/dev/null
qemu-img convert -f raw -O raw "$(uri '')" "$dir/take-time2.img"
ctl '{"command":"snapshot-create","name":"rw","origins":["ram"],"writable":true,"storage":[{"path":"'"$dir"'/rw.diff","size":33554432}]}' >/dev/null
ctl '{"command":"snapshot-take","name":"rw"}' >/dev/null
qemu-io -f raw -c 'write -P 0x77 0 2M' "$(uri ram@rw)" >/dev/null || fail "writable image refused a write"
qemu-io -f raw -r -c 'read -P 0x77 0 2M' "$(uri ram@rw)" >/dev/null || fail "writable image lost its write"
qemu-io -f raw -r -c 'read -P 0x5a 0 1M' -c 'read -P 0x66 1M 1M' "$(uri '')" >/dev/null ||
  fail "a write to the image reached the origin"
qemu-img compare -f raw -F raw "$dir/take-time2.img" "$(uri '')" >/dev/null || fail "origin changed"
pass "writable snapshot image keeps its writes away from the origin"
