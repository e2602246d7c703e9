#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-stop-with-stalled-request.sh — nbdkit's shutdown does not wait for a control request stuck on a file
# system that stopped answering. A snapshot-create whose difference storage is on a stalled FUSE file system
# waits in its open; then SIGTERM. The filter waits 15 s for the request (nbdsnapd's bound), saves the
# origin's CBT state as cleanly stopped and goes on without it; nbdkit ends once the file system answers. The
# filter used to wait for the request as long as the file system stalled, with no CBT state saved meanwhile:
# a supervisor's SIGKILL then cost the origin a new CBT generation, and a full backup.
# Then the same for a snapshot's writeback stuck on stalled difference storage (attack15 F2): the client's
# write is served, its copy-on-write store waits; at unload the CBT state is saved, and the engine's end (which
# waits for that store) gets 15 s before the log says why nbdkit still waits.
# Usage: test-stop-with-stalled-request.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

stallable_fs
truncate -s 4M "$dir/disk.img"
start_filter file "$dir/disk.img" nbdsnap-state-dir="$state"
write 0x11 0 64K ''  # attaches the origin
stall_fs
ctl_waiting create '{"command":"snapshot-create","name":"s","origins":["default"],"storage":[{"path":"'"$sfs"'/s.diff","size":16777216}]}'
_nap 1
still_waiting create "the file system of s.diff stalls"
kill -TERM "$server_pid"
await_log "unloaded, CBT state saved" 30 || true
grep "a control request still ran 15 s into the stop" "$server_log" >/dev/null ||
  fail "30 s after SIGTERM the stop still waits for the stalled snapshot-create"
grep "unloaded, CBT state saved, a control request left behind" "$server_log" >/dev/null ||
  fail "the filter did not unload after leaving the request behind"
cbt_file_is_clean default ||
  fail "the CBT state of the origin was not saved as cleanly stopped"
unstall_fs
await_server_exit "$(date +%s%N)"
((server_status == 0)) || fail "nbdkit exited with $server_status"
pass "nbdkit's stop leaves a control request stalled on its file system behind after 15 s, CBT state saved"

rm -f "$state/default.cbt"
start_filter --log writeback file "$dir/disk.img" nbdsnap-state-dir="$state"
write 0x11 0 1M ''
ctl '{"command":"snapshot-create","name":"w","origins":["default"],"storage":[{"path":"'"$sfs"'/w.diff","size":16777216}]}' \
  '{"command":"snapshot-take","name":"w"}' >/dev/null
stall_fs
timeout 120 qemu-io -f raw -c 'write -P 0x44 0 64K' "$(uri '')" >"$dir/write.out" 2>&1 &
writer=$!
track_pid "$writer"
_nap 2
kill -TERM "$server_pid"
await_log "unloaded, CBT state saved" 40 ||
  fail "40 s after SIGTERM the unload still waits for the store stuck on the stalled difference storage"
grep "difference-storage writes still ran 15 s into the unload" "$server_log" >/dev/null ||
  fail "the log does not say why nbdkit still waits"
cbt_file_is_clean default ||
  fail "the CBT state of the origin was not saved as cleanly stopped"
unstall_fs
await_server_exit "$(date +%s%N)"
((server_status == 0)) || fail "nbdkit exited with $server_status"
pass "nbdkit's unload says why it waits for a store stuck on difference storage, CBT state saved first"
