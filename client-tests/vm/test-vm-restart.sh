#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-vm-restart.sh — the server restarts under a running guest. The guest's disk is QEMU's NBD driver with
# reconnect-delay, so its requests wait while the server is down. The server is stopped with SIGTERM while the
# guest writes and started again: the guest's I/O resumes without an error, CBT keeps its generation and
# checkpoints, and when the guest is then killed (as at a power cut) every file whose fsync it saw return is
# on the origin with its checksum.
#
# nbdsnapd only: it finishes the requests it has read and closes the connection without reading more, so QEMU
# resends the rest after reconnecting. nbdkit 1.32 cannot be restarted under a connected QEMU this way: it
# answers each request it reads after SIGTERM with NBD_ESHUTDOWN (which the NBD protocol allows, "Terminating
# the transmission phase"), which QEMU 7.2 hands to the guest as an I/O error instead of reconnecting, and while
# the client sends nothing (a paused guest) it does not exit at all (docs/guide.md, limits).
# Usage: test-vm-restart.sh nbdsnapd NBDSNAP NBDSNAPD CACHE-DIR (see lib.sh)
[[ ${1:-} == nbdsnapd ]] || { echo "test-vm-restart.sh: nbdsnapd only (see the header)" >&2; exit 2; }
source "$(dirname "$0")/lib.sh"

cbt_field() {  # JSON FIELD: a field of a cbt-info reply, compact JSON
  jq -c ".cbt.$2" <<<"$1"
}

server_start
start_guest g1 "nbdsnap.format=1 nbdsnap.writer=g nbdsnap.pause=0.05" disk 60
vm_wait_fsynced "$dir/g1" 10 120 || fail "the writer did not start"
nbdsnap snapshot create s1 --origin disk --storage "$dir/s1.diff:256M" >/dev/null
nbdsnap snapshot take s1 >/dev/null
nbdsnap snapshot destroy s1 >/dev/null
before=$("$NBDSNAP" --json cbt info disk) || fail "cbt info"
jq -e '.cbt.checkpoints | tostring | contains("s1")' <<<"$before" >/dev/null || fail "no checkpoint s1: $before"
pass "guest g1 writes; checkpoint s1 taken ($vm_front_end)"

at_stop=$(vm_fsynced "$dir/g1" | wc -l)
server_stop
((server_status == 0)) || fail "$vm_front_end exited $server_status on SIGTERM"
sleep 3  # the guest's requests wait in QEMU's NBD driver meanwhile
while_down=$(vm_fsynced "$dir/g1" | wc -l)
server_start
vm_wait_fsynced "$dir/g1" $((while_down + 10)) 120 || fail "the guest's I/O did not resume after the restart"
check_no_io_errors g1
pass "restart under the guest: $at_stop fsyncs before the stop, $while_down while down, I/O resumed"

after=$("$NBDSNAP" --json cbt info disk) || fail "cbt info after the restart"
for field in generation checkpoints block_size change_number; do
  [[ $(cbt_field "$before" $field) == "$(cbt_field "$after" $field)" ]] ||
    fail "CBT $field changed across the restart: $(cbt_field "$before" $field) -> $(cbt_field "$after" $field)"
done
pass "CBT kept generation $(cbt_field "$after" generation) and checkpoint s1"

# No write the guest saw complete is lost: kill the guest where it stands (nothing more is flushed), stop the
# server cleanly, and look for every file the guest reported fsynced, after replaying the journal.
vm_fsynced "$dir/g1" >"$dir/sums-g1"
vm_kill "$dir/g1"
server_stop
((server_status == 0)) || fail "$vm_front_end exited $server_status on the second SIGTERM"
cp --sparse=always "$origin" "$dir/origin-copy.img"
e2fsck -E journal_only -y "$dir/origin-copy.img" >"$dir/replay.log" 2>&1 || (($? == 1)) ||
  { cat "$dir/replay.log" >&2; fail "journal replay on a copy of the origin"; }
check_filesystem "$dir/origin-copy.img" "origin after the guest was killed"
check_files "$dir/origin-copy.img" "$dir/sums-g1" "origin after the guest was killed"
pass "every one of the guest's $(wc -l <"$dir/sums-g1") fsynced files is on the origin"
