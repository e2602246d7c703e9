#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-failed-start-keeps-cbt.sh — a start that fails has served nothing, so it must not cost the origins their
# CBT history: a bad TLS key file (read before any origin opens), an origin that cannot be attached after
# another was, a control socket path that cannot be used. After each, a normal start keeps the generation and
# the checkpoints, and says nothing about a new generation.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 64M "$dir/disk.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw"
snapshot s1 disk
qemu-io -f raw -c "write -P 0x21 2M 64k" "$(uri disk)" >/dev/null
before=$(ctl '{"command":"cbt-info","origin":"disk"}')
stop_server TERM
((server_status == 0)) || fail "first stop not clean"

# Each of these exits 1 at start; the command line of a normal start plus one mistake.
echo "agent1" >"$dir/bad.psk"  # no key after the user name
: >"$dir/empty.raw"            # an origin with no size
mkdir -p "$dir/notasocket"
attempt() {
  local what=$1
  shift
  local status=0
  timeout 30 "$NBDSNAPD" --listen "unix:$sock" --control "${control_path:-$ctl}" --state-dir "$state" \
    --origin "disk=$dir/disk.raw" "$@" </dev/null >>"$server_log" 2>&1 || status=$?
  ((status == 1)) || fail "$what: nbdsnapd exited $status, expected 1"
  rm -f "$sock"
}
attempt "bad PSK file" --tls require --tls-psk "$dir/bad.psk"
attempt "missing certificate directory" --tls on --tls-certificates "$dir/nonexistent"
attempt "an origin with no size after a good one" --origin "empty=$dir/empty.raw"
control_path=$dir/notasocket attempt "a directory as the control socket"

start_nbdsnapd --origin "disk=$dir/disk.raw"
grep -q 'new CBT generation' <(tail -n 8 "$server_log") && fail "a failed start cost the origin its CBT generation"
after=$(ctl '{"command":"cbt-info","origin":"disk"}')
for field in generation change_number checkpoints; do
  [[ $(jf "$before" "r['cbt']['$field']") == $(jf "$after" "r['cbt']['$field']") ]] ||
    fail "$field changed across failed starts: $before vs $after"
done
stop_server TERM
echo PASS
