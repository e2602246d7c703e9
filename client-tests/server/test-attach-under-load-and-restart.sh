#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-attach-under-load-and-restart.sh — origins attached at run time while another origin is under qemu-io
# load (the load never sees an error); the new origin is snapshotted, and detaching it is refused while it is
# in the snapshot; after a clean stop a restart with no --origin for them serves the same origins with the same
# CBT generation, except one whose file was changed while nbdsnapd was stopped (a new generation).
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 64M "$dir/a.raw" "$dir/b.raw" "$dir/c.raw"
start_nbdsnapd --origin "a=$dir/a.raw"

# The load: qemu-io runs of 50 writes each on origin a, one after another until told to stop. Every run must
# succeed; the rounds count shows the load really overlapped the attaches.
(
  round=0
  while [[ ! -f $dir/stop-load ]]; do
    writes=()
    for ((i = 0; i < 50; i++)); do
      writes+=(-c "write -P $(((round + i) % 250 + 1)) $(((round * 50 + i) % 1024 * 64))k 64k")
    done
    qemu-io -f raw "${writes[@]}" "$(uri a)" >"$dir/load.out" 2>&1 || { cp "$dir/load.out" "$dir/load-error"; exit 1; }
    round=$((round + 1))
    echo $round >"$dir/load-rounds.new" && mv "$dir/load-rounds.new" "$dir/load-rounds"
  done
) &
load=$!
rounds() { cat "$dir/load-rounds" 2>/dev/null || echo 0; }
until (($(rounds) >= 1)); do
  kill -0 $load 2>/dev/null || fail "the load failed: $(cat "$dir/load-error" 2>/dev/null)"
  sleep 0.1
done
rounds_at_attach=$(rounds)

ctl "{\"command\":\"origin-attach\",\"name\":\"b\",\"path\":\"$dir/b.raw\"}" >/dev/null || fail "attach b"
qemu-io -f raw -c 'write -P 0x42 0 1M' "$(uri b)" >/dev/null || fail "write to the attached origin"
snapshot s1 b
qemu-io -f raw -c 'write -P 0x43 0 1M' "$(uri b)" >/dev/null || fail "write after the take"
qemu-io -f raw -r -c 'read -P 0x42 0 1M' "$(uri b@s1)" >/dev/null || fail "image of the attached origin"
reply=$(ctl '{"command":"origin-detach","name":"b"}' || true)
[[ $(jf "$reply" 'r["error"]["code"]') == busy ]] || fail "detach of an origin in a snapshot: $reply"
jf "$reply" 'r["error"]["message"]' | grep s1 >/dev/null || fail "the refusal does not name the snapshot: $reply"
ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null
ctl "{\"command\":\"origin-attach\",\"name\":\"c\",\"path\":\"$dir/c.raw\",\"read_only\":true}" >/dev/null ||
  fail "attach c"

until (($(rounds) >= rounds_at_attach + 2)); do  # at least one whole load run overlapped the attaches
  kill -0 $load 2>/dev/null || fail "the load failed: $(cat "$dir/load-error" 2>/dev/null)"
  sleep 0.1
done
touch "$dir/stop-load"
wait $load || fail "the load saw an error: $(cat "$dir/load-error" 2>/dev/null)"

generation() { jf "$(ctl "{\"command\":\"origin-info\",\"name\":\"$1\"}")" 'r["origin"]["generation"]'; }
gen_a=$(generation a) gen_b=$(generation b) gen_c=$(generation c)
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not stop cleanly"
[[ -f $state/origins.json ]] || fail "no origin list in the state directory"

# While nothing tracks it, someone writes c.raw (its mtime moved on explicitly: the check compares mtimes).
printf 'changed' | dd of="$dir/c.raw" bs=1 seek=4096 conv=notrunc status=none
touch -m -d "@$(($(stat -c %Y "$dir/c.raw") + 5))" "$dir/c.raw"

start_nbdsnapd
names=$(jf "$(ctl '{"command":"origins"}')" '" ".join(sorted(o["name"] for o in r["origins"]))')
[[ $names == "a b c" ]] || fail "a restart without --origin serves '$names', not 'a b c'"
[[ $(generation a) == "$gen_a" && $(generation b) == "$gen_b" ]] || fail "generations changed across a clean restart"
[[ $(generation c) != "$gen_c" ]] || fail "c was changed while stopped but kept its generation"
grep -q 'origin c: new CBT generation.*changed while nothing tracked it' "$server_log" || fail "no log line for c"
[[ $(jf "$(ctl '{"command":"origin-info","name":"c"}')" 'r["origin"]["read_only"]') == True ]] ||
  fail "c lost its read-only flag"
qemu-io -f raw -r -c 'read -P 0x43 0 1M' "$(uri b)" >/dev/null || fail "b's data after the restart"

# A detached origin is not served after the next restart.
ctl '{"command":"origin-detach","name":"c"}' >/dev/null || fail "detach c"
stop_server TERM
start_nbdsnapd
names=$(jf "$(ctl '{"command":"origins"}')" '" ".join(sorted(o["name"] for o in r["origins"]))')
[[ $names == "a b" ]] || fail "after detaching c a restart serves '$names'"
stop_server TERM
((server_status == 0)) || fail "last stop not clean"
echo PASS
