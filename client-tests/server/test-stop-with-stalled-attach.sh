#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-stop-with-stalled-attach.sh — a stop does not wait for a control request stuck on a file system that
# stopped answering (attack14f F2). An origin-attach of a file on a stalled FUSE file system waits in its
# open; then SIGTERM. nbdsnapd waits 15 s for the request, saves the other origins' CBT state as cleanly
# stopped, and exits without it (its thread stays in the kernel until the file system answers). It used to
# wait for the request as long as the file system stalled, with no origin's CBT state saved meanwhile: a
# supervisor's SIGKILL then cost every origin a new CBT generation, and each a full backup.
# Usage: test-stop-with-stalled-attach.sh NBDSNAPD
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

stallable_fs
truncate -s 4M "$sfs/x.img" "$dir/y.img"
start_nbdsnapd
ctl "{\"command\":\"origin-attach\",\"name\":\"y\",\"path\":\"$dir/y.img\"}" >/dev/null
write 0x11 0 64K y
stat "$sfs/x.img" >/dev/null  # its attributes cached: the attach gets as far as its open
stall_fs
ctl_waiting attach "{\"command\":\"origin-attach\",\"name\":\"x\",\"path\":\"$sfs/x.img\"}"
_nap 1
still_waiting attach "the file system of x.img stalls"
kill -TERM "$server_pid"
await_log "exiting without it" 30 || true
grep "a control request still ran 15 s into the stop" "$server_log" >/dev/null ||
  fail "30 s after SIGTERM the stop still waits for the stalled attach"
cbt_state_is_clean y || fail "the CBT state of origin y was not saved as cleanly stopped"
unstall_fs
await_server_exit "$(date +%s%N)"
((server_status == 0)) || fail "nbdsnapd exited with $server_status"
pass "a stop leaves a control request stalled on its file system behind after 15 s, its CBT state saved"
