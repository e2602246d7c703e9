#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-sigterm-restart-keeps-cbt.sh — SIGHUP is ignored; SIGTERM while a client writes: nbdsnapd finishes
# in-flight requests, saves CBT cleanly and exits 0; after a restart the generation, change number and checkpoints
# (with their take times, and a deleted one still gone) are the same, and the changes recorded before the stop are
# still in the CBT map.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 64M "$dir/disk.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw"
snapshot s0 disk
ctl '{"command":"snapshot-destroy","name":"s0"}' >/dev/null
snapshot s1 disk
ctl '{"command":"checkpoint-delete","origin":"disk","name":"s0"}' | grep '"ok":true' >/dev/null || fail "checkpoint-delete s0"
qemu-io -f raw -c "write -P 0x21 2M 64k" "$(uri disk)" >/dev/null
kill -HUP "$server_pid"  # a closed terminal: ignored
ctl '{"command":"version"}' >/dev/null || fail "nbdsnapd did not survive SIGHUP"
before=$(ctl '{"command":"cbt-info","origin":"disk"}')
checkpoints_before=$(ctl '{"command":"checkpoints","origin":"disk"}')
[[ $(jf "$checkpoints_before" "r['checkpoints'][0]['taken_unix_ms'] > 1.7e12") == True ]] ||
  fail "checkpoint s1 has no take time: $checkpoints_before"
map_before=$(ctl '{"command":"cbt-map","origin":"disk","since":"s1"}')

# A client writing while the signal arrives must not stop nbdsnapd from exiting cleanly.
qemu-io -f raw -c "write -P 0x22 8M 64k" -c "write -P 0x23 9M 64k" "$(uri disk)" >/dev/null
storm=()
for ((i = 0; i < 200; i++)); do storm+=(-c "write -P 0x24 $((16 + i % 16))M 64k"); done
qemu-io -f raw "${storm[@]}" "$(uri disk)" >/dev/null 2>&1 &  # may be cut short by the stop; only the stop is checked
storm_pid=$!
stop_server TERM
wait $storm_pid || true
((server_status == 0)) || fail "nbdsnapd exited $server_status on SIGTERM"
grep -q 'stopped cleanly' "$server_log" || fail "no clean stop in the log"

start_nbdsnapd --origin "disk=$dir/disk.raw"
grep -q 'new CBT generation' <(tail -n 5 "$server_log") && fail "a clean restart renewed the generation"
after=$(ctl '{"command":"cbt-info","origin":"disk"}')
for field in generation change_number checkpoints block_size; do
  [[ $(jf "$before" "r['cbt']['$field']") == $(jf "$after" "r['cbt']['$field']") ]] ||
    fail "$field changed across a clean restart: $before vs $after"
done
checkpoints_after=$(ctl '{"command":"checkpoints","origin":"disk"}')
[[ $checkpoints_after == "$checkpoints_before" ]] ||
  fail "checkpoints or their take times changed across a clean restart: $checkpoints_before vs $checkpoints_after"
gone=$(ctl '{"command":"cbt-map","origin":"disk","since":"s0"}') && fail "the deleted checkpoint s0 came back: $gone"
[[ $(jf "$gone" "r['error']['code']") == checkpoint_gone ]] || fail "s0 after a restart: $gone"
map_after=$(ctl '{"command":"cbt-map","origin":"disk","since":"s1"}')
/usr/bin/python3 - "$map_before" "$map_after" <<'PY' || fail "changes recorded before the stop were lost"
import json, sys
before, after = (json.loads(a)["ranges"] for a in sys.argv[1:3])
cover = lambda ranges: {b for r in ranges for b in range(r["offset"], r["offset"] + r["length"], 65536)}
assert cover(before) <= cover(after), (before, after)
assert 8 << 20 in cover(after) and 9 << 20 in cover(after), after
PY
stop_server TERM
((server_status == 0)) || fail "second stop not clean"
echo PASS
