#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-stop-with-stalled-storage.sh — a stop does not wait for a write stuck on difference storage that stopped
# answering (attack15 F1). A snapshot's storage is on a FUSE file system that stalls; a client's write then
# waits in its copy-on-write store; then SIGTERM. nbdsnapd closes the connection after its grace period, waits
# 15 s for the write, saves the CBT state as cleanly stopped and exits without it (its thread stays in the
# kernel until the file system answers). It used to wait as long as the file system stalled with no CBT state
# saved: a supervisor's SIGKILL then cost the origin a new CBT generation, and a full backup. The next start
# resumes the same generation.
# Usage: test-stop-with-stalled-storage.sh NBDSNAPD
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

stallable_fs
truncate -s 4M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img"
write 0x11 0 1M disk
ctl "{\"command\":\"snapshot-create\",\"name\":\"s\",\"origins\":[\"disk\"],\"storage\":[{\"path\":\"$sfs/s.diff\",\"size\":16777216}]}" \
  '{"command":"snapshot-take","name":"s"}' >/dev/null
generation=$(jf "$(ctl '{"command":"cbt-info","origin":"disk"}')" 'r["cbt"]["generation"]')
stall_fs
timeout 120 qemu-io -f raw -c 'write -P 0x44 0 64K' "$(uri disk)" >"$dir/write.out" 2>&1 &
writer=$!
track_pid "$writer"
_nap 2
kill -0 "$writer" 2>/dev/null || fail "the write did not wait for the stalled difference storage: $(cat "$dir/write.out")"
kill -TERM "$server_pid"
await_log "exiting without it" 40 ||
  fail "40 s after SIGTERM the stop still waits for the write stuck on the stalled difference storage"
grep "a request still ran 15 s into the stop" "$server_log" >/dev/null || fail "the log does not say why it exits"
cbt_file_is_clean disk ||
  fail "the CBT state was not saved as cleanly stopped"
unstall_fs
await_server_exit "$(date +%s%N)"
((server_status == 0)) || fail "nbdsnapd exited with $server_status"
pass "a stop leaves a write stuck on its difference storage behind after 15 s, its CBT state saved"

start_nbdsnapd --log second --origin "disk=$dir/disk.img"
[[ $(jf "$(ctl '{"command":"cbt-info","origin":"disk"}')" 'r["cbt"]["generation"]') == "$generation" ]] ||
  fail "the next start began a new CBT generation: $(grep -i generation "$server_log" | tail -n 2)"
stop_server TERM
pass "the next start resumes the CBT generation"
