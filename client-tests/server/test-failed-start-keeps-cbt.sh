#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-failed-start-keeps-cbt.sh — a start that fails has served nothing, so it must not cost the origins their
# CBT history: a bad TLS key file (read before any origin opens), an origin that cannot be attached after
# another was, a control socket path that cannot be used. After each, a normal start keeps the generation and
# the checkpoints, and says nothing about a new generation.
source "$(dirname "$0")/common.sh"

truncate -s 64M "$tmp/disk.raw"
start_nbdsnapd --origin "disk=$tmp/disk.raw"
snapshot s1 disk
qemu-io -f raw -c "write -P 0x21 2M 64k" "$(uri disk)" >/dev/null
before=$(control '{"command":"cbt-info","origin":"disk"}')
stop_nbdsnapd TERM
((stopped_status == 0)) || fail "first stop not clean"

# Each of these exits 1 at start; the command line of a normal start plus one mistake.
echo "agent1" >"$tmp/bad.psk"  # no key after the user name
: >"$tmp/empty.raw"            # an origin with no size
mkdir -p "$tmp/notasocket"
attempt() {
  local what=$1
  shift
  local status=0
  timeout 30 "$nbdsnapd" --listen "unix:$sock" --control "${control_path:-$ctl}" --state-dir "$state" \
    --origin "disk=$tmp/disk.raw" "$@" </dev/null >>"$log" 2>&1 || status=$?
  ((status == 1)) || fail "$what: nbdsnapd exited $status, expected 1"
  rm -f "$sock"
}
attempt "bad PSK file" --tls require --tls-psk "$tmp/bad.psk"
attempt "missing certificate directory" --tls on --tls-certificates "$tmp/nonexistent"
attempt "an origin with no size after a good one" --origin "empty=$tmp/empty.raw"
control_path=$tmp/notasocket attempt "a directory as the control socket"

start_nbdsnapd --origin "disk=$tmp/disk.raw"
grep -q 'new CBT generation' <(tail -n 8 "$log") && fail "a failed start cost the origin its CBT generation"
after=$(control '{"command":"cbt-info","origin":"disk"}')
for field in generation change_number checkpoints; do
  [[ $(json_field "$before" "r['cbt']['$field']") == $(json_field "$after" "r['cbt']['$field']") ]] ||
    fail "$field changed across failed starts: $before vs $after"
done
stop_nbdsnapd TERM
echo PASS
