#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-backup-interrupted.sh — a qcow2 backup stopped midway leaves nothing behind: SIGTERM or SIGINT during
# the copy ends the CLI by that signal, with its qemu-nbd gone and its temporary directory removed; after SIGKILL
# (no handler can run) the next backup removes the directory the dead one left, but not one whose owner lives
# nor a fresh one of an older nbdsnap; the unfinished point is discarded and the chain still backs up; the same
# for a full point that qemu-img convert writes (held mid-copy by stopping nbdsnapd). TMPDIR
# is private, so only this test's directories are looked at.
# Usage: test-cli-backup-interrupted.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

export TMPDIR=$dir/tmp
mkdir "$TMPDIR"
disk=$dir/disk.img
head -c 64M /dev/urandom >"$disk"  # data everywhere: a full backup copies every block
cp "$disk" "$dir/reference.img"    # nbdsnapd locks the disk itself
start_nbdsnapd --origin "disk=$disk"
run_cli 0 snapshot create s1 --origin disk --storage "$dir/s1.diff:80M"
run_cli 0 snapshot take s1

helper_dirs() { find "$TMPDIR" -maxdepth 1 -name 'nbdsnap-qemu-nbd.*' | sort; }
# gone PID: no such process, or a zombie its new parent has not reaped yet. One look (ps), not two: between a
# `kill -0` and a `ps` the zombie may be reaped (the test's watchdog reaps orphans every 50 ms).
gone() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || true
  [[ -z $stat || $stat == Z* ]]
}

# start_slow_backup [ENV-ARGS...]: a full qcow2 backup in 4 KiB requests one at a time (seconds long); returns
# once its qemu-nbd serves, with backup_pid and qemu_pid set.
start_slow_backup() {
  env "$@" "$NBDSNAP" backup --image "$(uri disk@s1)" --to "$dir/chain" --format qcow2 \
    --connections 1 --requests 1 --request-size 4K >"$dir/backup.out" 2>&1 &
  backup_pid=$!
  track_pid "$backup_pid"
  for _ in $(seq 300); do
    qemu_pid=$(pgrep -P "$backup_pid" -x qemu-nbd || true)
    if [[ -n $qemu_pid ]]; then
      local helper
      helper=$(helper_dirs | sed -n 1p)
      [[ -n $helper && -S $helper/qemu-nbd.sock ]] && return 0
    fi
    kill -0 "$backup_pid" 2>/dev/null || fail "the backup ended before it could be stopped: $(cat "$dir/backup.out")"
    sleep 0.05
  done
  fail "no qemu-nbd serving under the backup after 15 s"
}

# stop_backup SIGNAL STATUS: sends SIGNAL, expects the CLI to end by it within 15 s, nothing left behind.
stop_backup() {
  kill -s "$1" "$backup_pid"
  for _ in $(seq 150); do gone "$backup_pid" && break; sleep 0.1; done
  gone "$backup_pid" || fail "the backup still runs 15 s after SIG$1"
  local status=0
  wait "$backup_pid" || status=$?
  [[ $status -eq $2 ]] || fail "after SIG$1 the backup exited $status, expected $2: $(cat "$dir/backup.out")"
  gone "$qemu_pid" || fail "qemu-nbd ($qemu_pid) still runs after the backup ended by SIG$1"
  [[ -z $(helper_dirs) ]] || fail "SIG$1 left $(helper_dirs)"
}

start_slow_backup
stop_backup TERM 143
pass "SIGTERM during a qcow2 backup: ended by the signal, qemu-nbd gone, no temporary directory left"

# A background job of a script ignores SIGINT: give the backup the default disposition, as a terminal's ^C would.
start_slow_backup --default-signal=INT
stop_backup INT 130
pass "SIGINT likewise"

# SIGKILL: no handler runs; qemu-nbd is stopped by its parent-death signal, the directory stays for now.
start_slow_backup
killed_dir=$(helper_dirs)
kill -KILL "$backup_pid"
for _ in $(seq 150); do gone "$qemu_pid" && break; sleep 0.1; done
gone "$qemu_pid" || fail "qemu-nbd still runs 15 s after its parent was killed"
wait "$backup_pid" 2>/dev/null || true
[[ -d $killed_dir ]] || fail "expected the killed backup's $killed_dir to stay (nothing could remove it)"
# Beside it: a directory whose owner lives and holds its lock (this shell, through fd 9), and two of the older
# kind (no pid in the name): one two minutes old with no live socket (stale), one fresh (maybe being set up).
live_dir=$TMPDIR/nbdsnap-qemu-nbd.$$.abcdef
mkdir "$live_dir"
exec 9<"$live_dir"
flock -x -n 9 || fail "cannot lock $live_dir"
old_dir=$TMPDIR/nbdsnap-qemu-nbd.Ab12Cd
fresh_dir=$TMPDIR/nbdsnap-qemu-nbd.Zz98Yx
mkdir "$old_dir" "$fresh_dir"
touch "$old_dir/qemu-nbd.log"
touch -d '2 minutes ago' "$old_dir"

run_cli 0 --json backup --image "$(uri disk@s1)" --to "$dir/chain" --format qcow2
expect_err "removed point 0001, left unfinished"
[[ $(jq_out .kind) == full ]] || fail "the backup after the interrupted ones: $out"
[[ ! -e $killed_dir ]] || fail "the next backup left the killed one's $killed_dir"
[[ ! -e $old_dir ]] || fail "the next backup left the stale $old_dir"
[[ -d $live_dir && -d $fresh_dir ]] || fail "the next backup removed a directory in use: $(ls "$TMPDIR")"
[[ $(helper_dirs | wc -l) -eq 2 ]] || fail "directories left: $(helper_dirs)"
exec 9<&-
qemu-img compare -q -f raw -F qcow2 "$dir/reference.img" "$(jq_out .file)" || fail "the backup differs from the disk"
pass "after SIGKILL the next backup removes the dead one's directory and the stale old one, keeps those in use"

# A full point that qemu-img convert writes (no copier option given): held mid-copy by stopping nbdsnapd, so
# the signal finds qemu-img running. SIGTERM ends the CLI by it, qemu-img goes and so does its directory.
img_dirs() { find "$TMPDIR" -maxdepth 1 -name 'nbdsnap-qemu-img.*' | sort; }
start_held_convert() {
  "$NBDSNAP" backup --image "$(uri disk@s1)" --to "$dir/chain2" --format qcow2 >"$dir/backup.out" 2>&1 &
  backup_pid=$!
  track_pid "$backup_pid"
  qemu_pid=
  for _ in $(seq 1000); do
    qemu_pid=$(pgrep -P "$backup_pid" -x qemu-img) && break
    kill -0 "$backup_pid" 2>/dev/null || fail "the backup ended before qemu-img started: $(cat "$dir/backup.out")"
    sleep 0.005
  done
  [[ -n $qemu_pid ]] || fail "no qemu-img under the backup after 5 s"
  kill -STOP "$server_pid"
}
start_held_convert
kill -TERM "$backup_pid"
for _ in $(seq 150); do gone "$backup_pid" && break; sleep 0.1; done
status=0
wait "$backup_pid" || status=$?
kill -CONT "$server_pid"
((status == 143)) || fail "after SIGTERM the qemu-img backup exited $status, expected 143: $(cat "$dir/backup.out")"
gone "$qemu_pid" || fail "qemu-img ($qemu_pid) still runs after the backup ended by SIGTERM"
[[ -z $(img_dirs) ]] || fail "SIGTERM left $(img_dirs)"
pass "SIGTERM while qemu-img convert writes a full point: ended by the signal, qemu-img gone, no directory left"

# SIGKILL: qemu-img gets its parent-death signal; the next backup removes its directory and the unfinished point.
start_held_convert
killed_dir=$(img_dirs)
kill -KILL "$backup_pid"
wait "$backup_pid" 2>/dev/null || true
for _ in $(seq 150); do gone "$qemu_pid" && break; sleep 0.1; done
kill -CONT "$server_pid"
gone "$qemu_pid" || fail "qemu-img still runs 15 s after its parent was killed"
[[ -n $killed_dir && -d $killed_dir ]] || fail "expected the killed backup's qemu-img directory to stay: $(ls "$TMPDIR")"
run_cli 0 --json backup --image "$(uri disk@s1)" --to "$dir/chain2" --format qcow2
expect_err "removed point 0001, left unfinished"
[[ ! -e $killed_dir ]] || fail "the next backup left the killed one's $killed_dir"
qemu-img compare -q -f raw -F qcow2 "$dir/reference.img" "$(jq_out .file)" || fail "the backup differs from the disk"
pass "after SIGKILL under qemu-img the next backup removes its directory and the unfinished point, and is exact"
