#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-origin-file-locks.sh — other processes cannot write an origin or difference-storage file behind the
# tracker: a second nbdsnapd on the same origin file exits at start naming the first; origin-attach of a file
# qemu-io holds is refused naming qemu-io; qemu-io cannot open a served origin file, and the image of a taken
# snapshot still reads take-time bytes; a read-only origin lets readers (qemu-io -r, another read-only
# nbdsnapd) in and keeps writers out; one nbdsnapd's difference storage is refused to another. Once the
# holder is gone, the file is free again.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 16M "$dir/disk.raw" "$dir/other.raw" "$dir/ro.raw"
qemu-io -f raw -c 'write -P 0x11 0 1M' "$dir/disk.raw" >/dev/null
qemu-io -f raw -c 'write -P 0x33 0 1M' "$dir/ro.raw" >/dev/null

# second_nbdsnapd NAME ARGS...: a second nbdsnapd with its own sockets and state, run until it exits at start
# or its control socket answers (bounded); sets second_status (0 = running) and second_log.
second_nbdsnapd() {
  local name=$1 i
  shift
  second_log=$dir/$name.log
  setsid "$NBDSNAPD" --listen "unix:$dir/$name.sock" --control "$dir/$name.ctl" --state-dir "$dir/$name.state" \
    "$@" </dev/null >"$second_log" 2>&1 &
  second_pid=$!
  track_pid "$second_pid"
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$second_pid" 2>/dev/null; then
      second_status=0
      wait "$second_pid" || second_status=$?
      ((second_status != 0)) || second_status=1  # exited, even if with 0: it did not serve
      return 0
    fi
    if [[ -S $dir/$name.ctl ]] && /usr/bin/python3 -m nbdsnap "$dir/$name.ctl" \
      '{"command":"version"}' >/dev/null 2>&1; then
      second_status=0
      return 0
    fi
    sleep 0.1
  done
  fail "second nbdsnapd $name neither started nor exited"
}

# wait_for_locks PID: waits until process PID holds a lock (qemu-io takes its locks after it starts).
wait_for_locks() {
  local i
  for ((i = 0; i < 200; i++)); do
    grep -qs '^lock:' /proc/"$1"/fdinfo/* && return 0
    kill -0 "$1" 2>/dev/null || fail "process $1 exited before locking"
    sleep 0.05
  done
  fail "process $1 took no lock"
}

start_nbdsnapd --origin "disk=$dir/disk.raw" --origin-read-only "ro=$dir/ro.raw"
first_pid=$server_pid

# 1. A second nbdsnapd on the same origin file (here through a hard link) exits at start, naming the first.
ln "$dir/disk.raw" "$dir/disk-link.raw"
second_nbdsnapd second --origin "x=$dir/disk-link.raw"
((second_status != 0)) || fail "a second nbdsnapd served the same origin file"
grep -q "busy: origin x .*is locked by another process (nbdsnapd, pid $first_pid)" "$second_log" ||
  fail "the refusal does not name the holder: $(cat "$second_log")"

# 2. qemu-io cannot open the served origin file, neither to write nor to read; the image keeps take-time bytes.
snapshot s1 disk
if qemu-io -f raw -c 'write -P 0x99 0 1M' "$dir/disk.raw" >"$dir/qemu-io.out" 2>&1; then
  fail "qemu-io wrote a served origin file"
fi
grep -q 'Failed to lock byte\|Failed to get .* lock' "$dir/qemu-io.out" || fail "qemu-io: $(cat "$dir/qemu-io.out")"
qemu-io -f raw -r -c 'read 0 4k' "$dir/disk.raw" >/dev/null 2>&1 && fail "qemu-io -r opened a served read-write origin"
qemu-io -f raw -r -c 'read -P 0x11 0 1M' "$(uri disk@s1)" >/dev/null || fail "image lost its take-time bytes"
echo "ok: served origin files are locked against qemu-io and a second nbdsnapd"

# 3. origin-attach of a file qemu-io holds open is refused with busy, naming qemu-io.
qemu-io -f raw -c 'sleep 20000' "$dir/other.raw" </dev/null >/dev/null 2>&1 &
holder=$!
track_pid "$holder"
wait_for_locks "$holder"
reply=$(ctl "{\"command\":\"origin-attach\",\"name\":\"other\",\"path\":\"$dir/other.raw\"}") &&
  fail "attached a file qemu-io holds: $reply"
[[ $(jf "$reply" 'r["error"]["code"]') == busy ]] || fail "not busy: $reply"
[[ $(jf "$reply" 'r["error"]["errno"]') == 16 ]] || fail "not EBUSY: $reply"
jf "$reply" 'r["error"]["message"]' | grep "locked by another process (qemu-io, pid $holder)" >/dev/null ||
  fail "the refusal does not name qemu-io: $reply"
kill "$holder"
wait "$holder" || true
ctl "{\"command\":\"origin-attach\",\"name\":\"other\",\"path\":\"$dir/other.raw\"}" >/dev/null ||
  fail "the file stayed refused after qemu-io exited"
echo "ok: origin-attach refuses a file qemu-io holds, naming it, and takes it once qemu-io is gone"

# 4. A read-only origin: readers come in, writers do not.
qemu-io -f raw -r -c 'read -P 0x33 0 1M' "$dir/ro.raw" >/dev/null || fail "qemu-io -r refused a read-only origin"
qemu-io -f raw -c 'write -P 0x44 0 4k' "$dir/ro.raw" >"$dir/qemu-io.out" 2>&1 && fail "qemu-io wrote a read-only origin"
grep -q 'Failed to get "write" lock' "$dir/qemu-io.out" || fail "qemu-io: $(cat "$dir/qemu-io.out")"
qemu-img resize -f raw "$dir/ro.raw" 32M >/dev/null 2>&1 && fail "qemu-img resized a read-only origin"
second_nbdsnapd reader --origin-read-only "ro2=$dir/ro.raw"
((second_status == 0)) || fail "a second read-only nbdsnapd was refused: $(cat "$second_log")"
qemu-io -f raw -r -c 'read -P 0x33 0 1M' "nbd+unix:///ro2?socket=$dir/reader.sock" >/dev/null ||
  fail "second read-only nbdsnapd does not serve"
reader_pid=$second_pid
second_nbdsnapd writer --origin "rw=$dir/ro.raw"
((second_status != 0)) || fail "a read-write nbdsnapd served a read-only origin's file"
# Both readers, in whichever order the lock list gives them (it follows the pids, which may have wrapped).
grep -E "busy: origin rw .*is locked by another process \(nbdsnapd, pid ($first_pid; nbdsnapd, pid $reader_pid|$reader_pid; nbdsnapd, pid $first_pid)\)" \
  "$second_log" >/dev/null || fail "read-write refusal does not name both readers: $(cat "$second_log")"
kill "$reader_pid"
wait "$reader_pid" || true
echo "ok: a read-only origin is shared with readers and refused to writers"

# 5. One nbdsnapd's difference storage is refused to another, naming the holder.
truncate -s 16M "$dir/thief.raw"
second_nbdsnapd thief --origin "t=$dir/thief.raw"
((second_status == 0)) || fail "third nbdsnapd did not start: $(cat "$second_log")"
reply=$(/usr/bin/python3 -m nbdsnap "$dir/thief.ctl" \
  "{\"command\":\"snapshot-create\",\"name\":\"t1\",\"origins\":[\"t\"],\"storage\":[{\"path\":\"$dir/s1.diff\"}]}") &&
  fail "a second nbdsnapd took another's difference storage: $reply"
jf "$reply" 'r["error"]["message"]' | grep "locked by another process (nbdsnapd, pid $first_pid)" >/dev/null ||
  fail "storage refusal does not name the holder: $reply"
qemu-io -f raw -r -c 'read -P 0x11 0 1M' "$(uri disk@s1)" >/dev/null || fail "image damaged by the refused storage"
kill "$second_pid"
wait "$second_pid" || true
echo "ok: difference storage of one nbdsnapd is refused to another"

# 6. Once the first nbdsnapd has stopped, its files are free.
stop_server TERM
qemu-io -f raw -c 'write -P 0x55 0 4k' "$dir/disk.raw" >/dev/null || fail "origin file still locked after stop"
echo PASS
