#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-long-names.sh — origin and snapshot names of 255 bytes, the longest the docs allow: nbdsnapd starts with
# such an origin, attaches another over the control socket, snapshots one under a 255-byte snapshot name, serves
# the image, and after SIGTERM and a restart resumes the same CBT generation.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

long=$(printf 'o%.0s' {1..255})
attached=$(printf 'a%.0s' {1..250})$'\xc3\xa9'"end"  # 255 bytes ending in UTF-8 text
snap=$(printf 's%.0s' {1..255})
((${#long} == 255)) || fail "test name is ${#long} bytes"
((${#snap} == 255)) || fail "test snapshot name is ${#snap} bytes"
truncate -s 16M "$dir/disk.raw" "$dir/second.raw"

start_nbdsnapd --origin "$long=$dir/disk.raw"
reply=$(ctl "$(/usr/bin/python3 -c 'import json,sys; print(json.dumps({"command": "origin-attach",
  "name": sys.argv[1], "path": sys.argv[2]}, ensure_ascii=False))' "$attached" "$dir/second.raw")") ||
  fail "origin-attach with a 255-byte name: $reply"
qemu-io -f raw -c 'write -P 0x21 0 1M' "$(uri "$long")" >/dev/null || fail "write to the long-named origin"
ctl "{\"command\":\"snapshot-create\",\"name\":\"$snap\",\"origins\":[\"$long\"],\"storage\":[{\"path\":\"$dir/s.diff\",\"size\":16777216}]}" \
  "{\"command\":\"snapshot-take\",\"name\":\"$snap\"}" >/dev/null || fail "snapshot with a 255-byte name"
qemu-io -f raw -c 'write -P 0x22 0 1M' "$(uri "$long")" >/dev/null
qemu-io -f raw -r -c 'read -P 0x21 0 1M' "$(uri "$long@$snap")" >/dev/null || fail "image of a 255-byte snapshot"
before=$(ctl "{\"command\":\"cbt-info\",\"origin\":\"$long\"}")
attached_info() {
  ctl "$(/usr/bin/python3 -c 'import json,sys; print(json.dumps({"command": "cbt-info", "origin": sys.argv[1]},
    ensure_ascii=False))' "$attached")"
}
attached_before=$(attached_info)
echo "ok: 255-byte origin and snapshot names attach, snapshot and serve"

# Every state file name fits, and each holds its own origin's name.
for file in "$state"/*.cbt; do
  name=$(basename "$file")
  ((${#name} <= 251)) || fail "state file name of ${#name} bytes: $name"
done
[[ $(ls "$state"/*.cbt | wc -l) == 2 ]] || fail "expected two CBT state files: $(ls "$state")"

stop_server TERM
((server_status == 0)) || fail "nbdsnapd exited $server_status on SIGTERM"
start_nbdsnapd --origin "$long=$dir/disk.raw"
after=$(ctl "{\"command\":\"cbt-info\",\"origin\":\"$long\"}")
for field in generation change_number checkpoints; do
  [[ $(jf "$before" "r['cbt']['$field']") == $(jf "$after" "r['cbt']['$field']") ]] ||
    fail "$field changed across a clean restart: $before vs $after"
done
grep -q "new CBT generation" <(tail -n 5 "$server_log") && fail "the restart renewed the generation"
# The origin attached at run time is listed again, under its full name, with its CBT resumed.
attached_after=$(attached_info) || fail "the 255-byte origin attached at run time was lost: $attached_after"
[[ $(jf "$attached_before" "r['cbt']['generation']") == $(jf "$attached_after" "r['cbt']['generation']") ]] ||
  fail "the run-time origin's generation changed: $attached_before vs $attached_after"
stop_server TERM
echo PASS
