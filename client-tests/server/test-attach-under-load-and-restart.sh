#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-attach-under-load-and-restart.sh — origins attached at run time while another origin is under qemu-io
# load (the load never sees an error); the new origin is snapshotted, and detaching it is refused while it is
# in the snapshot; after a clean stop a restart with no --origin for them serves the same origins with the same
# CBT generation, except one whose file was changed while nbdsnapd was stopped (a new generation).
source "$(dirname "$0")/common.sh"

truncate -s 64M "$tmp/a.raw" "$tmp/b.raw" "$tmp/c.raw"
start_nbdsnapd --origin "a=$tmp/a.raw"

# The load: qemu-io runs of 50 writes each on origin a, one after another until told to stop. Every run must
# succeed; the rounds count shows the load really overlapped the attaches.
(
  round=0
  while [[ ! -f $tmp/stop-load ]]; do
    writes=()
    for ((i = 0; i < 50; i++)); do
      writes+=(-c "write -P $(((round + i) % 250 + 1)) $(((round * 50 + i) % 1024 * 64))k 64k")
    done
    qemu-io -f raw "${writes[@]}" "$(uri a)" >"$tmp/load.out" 2>&1 || { cp "$tmp/load.out" "$tmp/load-error"; exit 1; }
    round=$((round + 1))
    echo $round >"$tmp/load-rounds.new" && mv "$tmp/load-rounds.new" "$tmp/load-rounds"
  done
) &
load=$!
rounds() { cat "$tmp/load-rounds" 2>/dev/null || echo 0; }
until (($(rounds) >= 1)); do
  kill -0 $load 2>/dev/null || fail "the load failed: $(cat "$tmp/load-error" 2>/dev/null)"
  sleep 0.1
done
rounds_at_attach=$(rounds)

control "{\"command\":\"origin-attach\",\"name\":\"b\",\"path\":\"$tmp/b.raw\"}" >/dev/null || fail "attach b"
qemu-io -f raw -c 'write -P 0x42 0 1M' "$(uri b)" >/dev/null || fail "write to the attached origin"
snapshot s1 b
qemu-io -f raw -c 'write -P 0x43 0 1M' "$(uri b)" >/dev/null || fail "write after the take"
qemu-io -f raw -r -c 'read -P 0x42 0 1M' "$(uri b@s1)" >/dev/null || fail "image of the attached origin"
reply=$(control '{"command":"origin-detach","name":"b"}' || true)
[[ $(json_field "$reply" 'r["error"]["code"]') == busy ]] || fail "detach of an origin in a snapshot: $reply"
json_field "$reply" 'r["error"]["message"]' | grep -q s1 || fail "the refusal does not name the snapshot: $reply"
control '{"command":"snapshot-destroy","name":"s1"}' >/dev/null
control "{\"command\":\"origin-attach\",\"name\":\"c\",\"path\":\"$tmp/c.raw\",\"read_only\":true}" >/dev/null ||
  fail "attach c"

until (($(rounds) >= rounds_at_attach + 2)); do  # at least one whole load run overlapped the attaches
  kill -0 $load 2>/dev/null || fail "the load failed: $(cat "$tmp/load-error" 2>/dev/null)"
  sleep 0.1
done
touch "$tmp/stop-load"
wait $load || fail "the load saw an error: $(cat "$tmp/load-error" 2>/dev/null)"

generation() { json_field "$(control "{\"command\":\"origin-info\",\"name\":\"$1\"}")" 'r["origin"]["generation"]'; }
gen_a=$(generation a) gen_b=$(generation b) gen_c=$(generation c)
stop_nbdsnapd TERM
((stopped_status == 0)) || fail "nbdsnapd did not stop cleanly"
[[ -f $state/origins.json ]] || fail "no origin list in the state directory"

# While nothing tracks it, someone writes c.raw (its mtime moved on explicitly: the check compares mtimes).
printf 'changed' | dd of="$tmp/c.raw" bs=1 seek=4096 conv=notrunc status=none
touch -m -d "@$(($(stat -c %Y "$tmp/c.raw") + 5))" "$tmp/c.raw"

start_nbdsnapd
names=$(json_field "$(control '{"command":"origins"}')" '" ".join(sorted(o["name"] for o in r["origins"]))')
[[ $names == "a b c" ]] || fail "a restart without --origin serves '$names', not 'a b c'"
[[ $(generation a) == "$gen_a" && $(generation b) == "$gen_b" ]] || fail "generations changed across a clean restart"
[[ $(generation c) != "$gen_c" ]] || fail "c was changed while stopped but kept its generation"
grep -q 'origin c: new CBT generation.*changed while nothing tracked it' "$log" || fail "no log line for c"
[[ $(json_field "$(control '{"command":"origin-info","name":"c"}')" 'r["origin"]["read_only"]') == True ]] ||
  fail "c lost its read-only flag"
qemu-io -f raw -r -c 'read -P 0x43 0 1M' "$(uri b)" >/dev/null || fail "b's data after the restart"

# A detached origin is not served after the next restart.
control '{"command":"origin-detach","name":"c"}' >/dev/null || fail "detach c"
stop_nbdsnapd TERM
start_nbdsnapd
names=$(json_field "$(control '{"command":"origins"}')" '" ".join(sorted(o["name"] for o in r["origins"]))')
[[ $names == "a b" ]] || fail "after detaching c a restart serves '$names'"
stop_nbdsnapd TERM
((stopped_status == 0)) || fail "last stop not clean"
echo PASS
