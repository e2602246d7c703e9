#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-nbdinfo-list.sh — nbdinfo --list shows origins and snapshot images with descriptions and contexts;
# qemu-img info sees the right size; an image disappears from the list when its snapshot is destroyed.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 64M "$dir/disk0.raw"
truncate -s 16M "$dir/disk1.raw"
start_nbdsnapd --origin "disk0=$dir/disk0.raw" --origin-read-only "disk1=$dir/disk1.raw"
snapshot s1 disk0
qemu-io -f raw -c 'write -P 0xaa 0 1M' "$(uri disk0)" >/dev/null
ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null
snapshot s2 disk0

nbdinfo --list "$(uri '')" >"$dir/list"
cat "$dir/list"
grep -q '^export="disk0":' "$dir/list" || fail "disk0 not listed"
grep -q '^export="disk1":' "$dir/list" || fail "disk1 not listed"
grep -q '^export="disk0@s2":' "$dir/list" || fail "image disk0@s2 not listed"
grep -q 'description: origin, 64.0 MiB, read-write' "$dir/list" || fail "origin description"
grep -q 'description: snapshot s2 of disk0, taken .*, read-only' "$dir/list" || fail "image description"
grep -q 'qemu:dirty-bitmap:s1' "$dir/list" || fail "dirty bitmap context not listed"

nbdinfo --json "$(uri disk1)" >"$dir/disk1.json"
[[ $(jf "$(cat "$dir/disk1.json")" 'r["exports"][0]["is_read_only"]') == True ]] || fail "disk1 not read-only"
nbdinfo --json "$(uri disk0@s2)" >"$dir/image.json"
[[ $(jf "$(cat "$dir/image.json")" 'r["exports"][0]["is_read_only"]') == True ]] || fail "image not read-only"
[[ $(jf "$(cat "$dir/image.json")" 'r["exports"][0]["can_multi_conn"]') == True ]] || fail "no multi-conn"

qemu-img info --output=json -f raw "$(uri disk0@s2)" >"$dir/info.json"
[[ $(jf "$(cat "$dir/info.json")" 'r["virtual-size"]') == 67108864 ]] || fail "qemu-img info size"

ctl '{"command":"snapshot-destroy","name":"s2"}' >/dev/null
nbdinfo --list "$(uri '')" >"$dir/list2"
grep -q 'disk0@s2' "$dir/list2" && fail "destroyed image still listed"
nbdinfo "$(uri disk0@s2)" >/dev/null 2>&1 && fail "destroyed image still opens"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0 on SIGTERM"
echo PASS
