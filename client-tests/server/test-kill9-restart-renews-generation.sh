#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-kill9-restart-renews-generation.sh — after kill -9 nbdsnapd cannot know which writes CBT missed, so
# the restart starts a new CBT generation (dropping old checkpoints) and says so in the log.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 64M "$dir/disk.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw"
snapshot s1 disk
qemu-io -f raw -c "write -P 0x31 0 1M" "$(uri disk)" >/dev/null
before=$(ctl '{"command":"cbt-info","origin":"disk"}')
stop_server KILL

start_nbdsnapd --origin "disk=$dir/disk.raw"
grep -q 'origin disk: new CBT generation' "$server_log" || fail "the log does not say the generation was renewed"
after=$(ctl '{"command":"cbt-info","origin":"disk"}')
[[ $(jf "$before" "r['cbt']['generation']") != $(jf "$after" "r['cbt']['generation']") ]] ||
  fail "generation kept after kill -9"
[[ $(jf "$after" "len(r['cbt']['checkpoints'])") == 0 ]] || fail "old checkpoints survived kill -9"
qemu-io -f raw -r -c "read -P 0x31 0 1M" "$(uri disk)" >/dev/null || fail "origin data lost"
stop_server TERM
((server_status == 0)) || fail "stop not clean"
echo PASS
