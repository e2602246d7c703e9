#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-file-dir-exports.sh — `file dir=D`: the plugin's list is the truth. Every file in D is its own origin
# before any client opened it; a name that is not a file in D is refused by the filter; a file added while
# nbdkit runs becomes an origin when it is first listed or opened; after a restart with nbdsnap-state-dir, an
# export nobody has opened yet answers cbt-info and checkpoints with its saved generation.
# Usage: test-file-dir-exports.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

mkdir "$dir/D" "$dir/state"
truncate -s 8M "$dir/D/a.img" "$dir/D/b.img"
truncate -s 1M "$dir/x"  # what "../x" would name
args=(file dir="$dir/D" nbdsnap-state-dir="$dir/state" nbdsnap-chunk-min-shift=16)
start_filter --log dir "${args[@]}"

origins() { ctl '{"command":"origins"}' | jq -c '[.origins[].name] | sort'; }
[[ $(origins) == '["a.img","b.img"]' ]] || fail "origins before any client opened an export: $(origins)"
pass "every file in D is an origin before any client opened it"

qemu-io -f raw -c 'write -P 0xa1 0 1M' "$(uri a.img)" >/dev/null
qemu-io -f raw -c 'write -P 0xb1 2M 1M' "$(uri b.img)" >/dev/null
{ file_holds "$dir/D/a.img" 0 1M 0xa1 && file_holds "$dir/D/a.img" 2M 1M 0; } || fail "a.img on disk"
{ file_holds "$dir/D/b.img" 0 1M 0 && file_holds "$dir/D/b.img" 2M 1M 0xb1; } || fail "b.img on disk"
[[ $(ctl '{"command":"cbt-map","origin":"a.img"}' | jq -c .ranges) == '[{"length":1048576,"offset":0}]' ]] ||
  fail "cbt-map of a.img"
[[ $(ctl '{"command":"cbt-map","origin":"b.img"}' | jq -c .ranges) == '[{"length":1048576,"offset":2097152}]' ]] ||
  fail "cbt-map of b.img"
pass "each file is its own origin with its own CBT"

for name in nope ../x ''; do
  if nbdinfo "$(uri "$name")" >/dev/null 2>&1; then fail "export '$name' opened"; fi
done
grep -q "export 'nope' is refused: export 'nope' is not one of the plugin's exports (\"a.img\", \"b.img\")" \
  "$server_log" || fail "no clear message for 'nope'"
grep -q "export '' is refused: export '' is not one of the plugin's exports" "$server_log" ||
  fail "no clear message for the default export"
pass "names that are not files in D are refused"

truncate -s 4M "$dir/D/c.img" "$dir/D/d.img"
info=$(ctl '{"command":"cbt-info","origin":"c.img"}')
[[ $(jq .cbt.device_size <<<"$info") == 4194304 ]] || fail "a file added to D is no origin: $info"
qemu-io -f raw -c 'write -P 0xd1 0 64K' "$(uri d.img)" >/dev/null || fail "a file added to D does not open"
[[ $(origins) == '["a.img","b.img","c.img","d.img"]' ]] || fail "origins after adding files: $(origins)"
pass "files added to D become origins when first listed or opened"

# Reading the list is a connection of the filter to nbdkit itself: requests about snapshots, or naming only
# attached origins, must not pay it (under load it made every snapshot-take slow, bench T8).
connections() { grep -c "debug: accepted connection" "$server_log"; }
before=$(connections)
ctl '{"command":"snapshot-create","name":"t","origins":["a.img","d.img"],"storage":[{"path":"'"$dir/t.diff"'","size":16777216}]}' >/dev/null
for request in '{"command":"snapshot-take","name":"t"}' '{"command":"snapshot-info","name":"t"}' \
  '{"command":"snapshot-list"}' '{"command":"cbt-info","origin":"a.img"}' '{"command":"checkpoints","origin":"d.img"}' \
  '{"command":"origin-info","name":"b.img"}' '{"command":"snapshot-destroy","name":"t"}'; do
  ctl "$request" >/dev/null
done
after=$(connections)
((after == before)) || fail "requests about snapshots and attached origins connected to nbdkit $((after - before)) time(s)"
truncate -s 4M "$dir/D/e.img"
[[ $(ctl '{"command":"cbt-info","origin":"e.img"}' | jq .cbt.device_size) == 4194304 ]] ||
  fail "a file added to D is no origin when a request names it"
(($(connections) > after)) || fail "naming an origin not attached yet did not read the export list"
[[ $(origins) == '["a.img","b.img","c.img","d.img","e.img"]' ]] || fail "origins: $(origins)"
pass "the export list is read only for requests that list origins or name one not attached yet"

# A checkpoint, a clean stop, and a restart: nobody opens b.img or c.img before asking for their CBT.
ctl '{"command":"snapshot-create","name":"s1","origins":["b.img","c.img"],"storage":[{"path":"'"$dir/s1.diff"'","size":16777216}]}' >/dev/null
ctl '{"command":"snapshot-take","name":"s1"}' >/dev/null
ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null
generation_b=$(ctl '{"command":"cbt-info","origin":"b.img"}' | jq -r .cbt.generation)
generation_c=$(ctl '{"command":"cbt-info","origin":"c.img"}' | jq -r .cbt.generation)
stop_server
start_filter --log dir2 "${args[@]}"
checkpoints=$(ctl '{"command":"checkpoints","origin":"b.img"}')
[[ $(jq -r .generation <<<"$checkpoints") == "$generation_b" ]] || fail "b.img after restart: $checkpoints"
[[ $(jq -c '[.checkpoints[].name]' <<<"$checkpoints") == '["s1"]' ]] || fail "b.img checkpoints: $checkpoints"
info=$(ctl '{"command":"cbt-info","origin":"c.img"}')
[[ $(jq -r .cbt.generation <<<"$info") == "$generation_c" ]] || fail "c.img after restart: $info"
pass "after a restart, exports nobody opened answer cbt-info and checkpoints with their saved generation"
