#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-loop-backing-file-lock.sh — a loop device and its backing file are one disk, so two nbdsnapd never serve
# them both: with the loop device an origin, a second nbdsnapd on the backing file exits at start naming the
# first; the other way round, attaching the loop device is refused with busy naming the nbdsnapd that serves
# the file. A hostile tester saw both accept writes, each missing the other's (CBT and images). Read-only
# origins still share the file; a detached or stopped holder frees it. Needs root and loop devices; skipped
# (77) otherwise.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

requires_root
requires losetup --version
truncate -s 16M "$dir/disk.raw"
loop=$(losetup --find --show "$dir/disk.raw" 2>/dev/null) || skip "no loop device here"
started=()
# The servers go first (a loop device in use is not detached at once), then the loop device this test made.
release_loop_device() {
  local pid i
  for pid in "${started[@]}" $server_pid; do
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  for ((i = 0; i < 50; i++)); do losetup -d "$loop" 2>/dev/null && break; sleep 0.1; done
}
cleanup_fn release_loop_device

# second_nbdsnapd NAME ARGS...: another nbdsnapd with its own sockets and state, run until it exits at start or
# its control socket answers (bounded); sets second_status (0 = running), second_pid and second_log.
second_nbdsnapd() {
  local name=$1 i
  shift
  second_log=$dir/$name.log
  setsid "$NBDSNAPD" --listen "unix:$dir/$name.sock" --control "$dir/$name.ctl" --state-dir "$dir/$name.state" \
    "$@" </dev/null >"$second_log" 2>&1 {_nap_fd}>&- &
  second_pid=$!
  started+=("$second_pid")
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$second_pid" 2>/dev/null; then
      second_status=0
      wait "$second_pid" || second_status=$?
      ((second_status != 0)) || second_status=1  # exited, even if with 0: it did not serve
      return 0
    fi
    if [[ -S $dir/$name.ctl ]] && "$PY" -m nbdsnap "$dir/$name.ctl" '{"command":"version"}' >/dev/null 2>&1; then
      second_status=0
      return 0
    fi
    _nap 0.1
  done
  fail "second nbdsnapd $name neither started nor exited"
}
stop_second() {
  kill -TERM "$second_pid"
  wait "$second_pid" || true
}
# attach_loop [READ_ONLY]: origin-attach of the loop device as blk in the first nbdsnapd; the reply in $reply.
attach_loop() {
  reply=$(ctl "{\"command\":\"origin-attach\",\"name\":\"blk\",\"path\":\"$loop\",\"read_only\":${1:-false}}")
}

# 1. The loop device is an origin: a second nbdsnapd on its backing file exits at start, naming the first, and
# qemu-io cannot write the file either.
start_nbdsnapd --origin "blk=$loop"
first_pid=$server_pid
write 0x11 0 1M blk || fail "write through the loop device origin"
second_nbdsnapd file --origin "f=$dir/disk.raw"
((second_status != 0)) || fail "a second nbdsnapd served the backing file of an origin's loop device"
grep -q "busy: origin f .*disk.raw is locked by another process (nbdsnapd, pid $first_pid)" "$second_log" ||
  fail "the refusal does not name the holder: $(cat "$second_log")"
qemu-io -f raw -c 'write -P 0x99 0 4k' "$dir/disk.raw" >"$dir/qemu-io.out" 2>&1 && fail "qemu-io wrote the backing file"
grep -q 'Failed to lock byte\|Failed to get .* lock' "$dir/qemu-io.out" || fail "qemu-io: $(cat "$dir/qemu-io.out")"
pass "a loop device origin's backing file is refused to a second nbdsnapd and to qemu-io"

# 2. Detached, the loop device lets go of its file: a second nbdsnapd serves the file, and now the loop device
# is refused (busy, naming that nbdsnapd), until it stops.
ctl '{"command":"origin-detach","name":"blk"}' >/dev/null || fail "detach blk"
second_nbdsnapd file2 --origin "f=$dir/disk.raw"
((second_status == 0)) || fail "the file stayed locked after the loop device was detached: $(cat "$second_log")"
qemu-io -f raw -c 'write -P 0x22 0 1M' "nbd+unix:///f?socket=$dir/file2.sock" >/dev/null || fail "write through f"
attach_loop && fail "attached a loop device over a file another nbdsnapd serves: $reply"
[[ $(jf "$reply" 'r["error"]["code"]') == busy ]] || fail "not busy: $reply"
jf "$reply" 'r["error"]["message"]' |
  grep -F "disk.raw (the backing file of $loop) is locked by another process (nbdsnapd, pid $second_pid)" >/dev/null ||
  fail "the refusal does not name the holder: $reply"
stop_second
attach_loop || fail "the loop device stayed refused after the file's nbdsnapd stopped: $reply"
qemu-io -f raw -r -c 'read -P 0x22 0 1M' "$(uri blk)" >/dev/null || fail "blk reads other bytes than f wrote"
pass "a loop device over a file another nbdsnapd serves is refused, naming it, and free once it stops"

# 3. Read-only both: they share the file; a read-write nbdsnapd on the file is refused.
ctl '{"command":"origin-detach","name":"blk"}' >/dev/null || fail "detach blk"
attach_loop true || fail "attach the loop device read-only: $reply"
second_nbdsnapd reader --origin-read-only "r=$dir/disk.raw"
((second_status == 0)) || fail "a read-only nbdsnapd on the file of a read-only loop origin: $(cat "$second_log")"
reader_pid=$second_pid
second_nbdsnapd writer --origin "w=$dir/disk.raw"
((second_status != 0)) || fail "a read-write nbdsnapd served the file of a read-only loop origin"
grep -q "busy: origin w .*disk.raw is locked by another process" "$second_log" || fail "writer: $(cat "$second_log")"
second_pid=$reader_pid
stop_second
pass "read-only origins share a loop device's backing file; a writer is refused"

stop_server TERM
echo PASS
