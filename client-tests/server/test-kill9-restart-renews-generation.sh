#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-kill9-restart-renews-generation.sh — after kill -9 nbdsnapd cannot know which writes CBT missed, so
# the restart starts a new CBT generation (dropping old checkpoints) and says so in the log.
source "$(dirname "$0")/common.sh"

truncate -s 64M "$tmp/disk.raw"
start_nbdsnapd --origin "disk=$tmp/disk.raw"
snapshot s1 disk
qemu-io -f raw -c "write -P 0x31 0 1M" "$(uri disk)" >/dev/null
before=$(control '{"command":"cbt-info","origin":"disk"}')
stop_nbdsnapd KILL

start_nbdsnapd --origin "disk=$tmp/disk.raw"
grep -q 'origin disk: new CBT generation' "$log" || fail "the log does not say the generation was renewed"
after=$(control '{"command":"cbt-info","origin":"disk"}')
[[ $(json_field "$before" "r['cbt']['generation']") != $(json_field "$after" "r['cbt']['generation']") ]] ||
  fail "generation kept after kill -9"
[[ $(json_field "$after" "len(r['cbt']['checkpoints'])") == 0 ]] || fail "old checkpoints survived kill -9"
qemu-io -f raw -r -c "read -P 0x31 0 1M" "$(uri disk)" >/dev/null || fail "origin data lost"
stop_nbdsnapd TERM
((stopped_status == 0)) || fail "stop not clean"
echo PASS
