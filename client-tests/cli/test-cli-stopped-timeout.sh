#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-stopped-timeout.sh — nbdsnap --timeout counts only time during which nbdsnap itself runs
# (cli/stop_aware_deadline.h), and a backup whose server stops answering ends after about one --timeout:
# 1. a backup (one 4 KiB read in flight at a time) whose process group and nbdsnapd are stopped (SIGSTOP, as
#    ^Z does) for twice --timeout, nbdsnap continued first: it completes, and the backup reads as the origin;
# 2. a backup whose nbdsnapd is stopped for good: exit 4 within --timeout + 1 s (the failure path asks the
#    stopped server for the snapshot's state only briefly), saying the snapshot may still exist and how to
#    destroy it;
# 3. the same with --json: the error object's message says so too (it once held the read's error alone);
# 4. a restore whose target (nbdsnapd's origin export) stops answering: exit 4, the message names the target,
#    not the image it reads (qemu-nbd serving the chain), which answered.
# Usage: test-cli-stopped-timeout.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
requires qemu-io --version

truncate -s 64M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img"
write 0x5c 0 64M disk
write 0xa7 1M 3M disk
run_cli 0 snapshot create s --origin disk --storage "$dir/s.diff:16M"
run_cli 0 snapshot take s

# start_backup FILE TIMEOUT [OPTION...]: a slow backup (4 KiB reads, one in flight) in a process group of its
# own (setsid: $backup_pid leads it, with timeout(1) and nbdsnap), bounded at 30 s, with nbdsnap's global
# OPTIONs; waits until the copy began.
start_backup() {
  backup=$1
  setsid timeout -k 2 30 "$NBDSNAP" --timeout "$2" "${@:3}" backup --image "$(uri disk@s)" --to "$backup" \
    --connections 1 --requests 1 --request-size 4K >"$dir/out" 2>"$dir/err" &
  backup_pid=$!
  track_pid "$backup_pid"
  await_copy_start "the backup" test -e "$backup.nbdsnap-backup"
}

# await_copy_start WHAT COMMAND...: waits until COMMAND succeeds, while $backup_pid runs. Only a readiness
# wait, so its bound is the copy's own 30 s, not a timing claim: a qcow2 restore first starts qemu-nbd and
# reads the chain, which took over 5 s under ASan on a loaded machine (CI, 2026-12-03).
await_copy_start() {
  local what=$1 i
  shift
  for ((i = 0; i < 300; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$backup_pid" 2>/dev/null || fail "$what ended before its copy began: $(cat "$dir/err") (progress: $(tr "\n" " " <"$dir/progress" 2>/dev/null))"
    _nap 0.1
  done
  fail "$what did not begin its copy within 30 s: $(cat "$dir/err")"
}

# finish_backup: waits for the backup; sets $status, $out, $err, and $elapsed_ms since $since (date +%s%N).
finish_backup() {
  status=0
  wait "$backup_pid" || status=$?
  elapsed_ms=$((($(date +%s%N) - since) / 1000000))
  out=$(cat "$dir/out")
  err=$(cat "$dir/err")
  ((status != 124)) || fail "the backup still ran after 30 s (killed): $err"
}

# 1. The server is stopped first (so that the request in flight stays unanswered), then nbdsnap's group; after
# 4 s (twice --timeout) nbdsnap is continued first, finding its deadline long past, then the server.
start_backup "$dir/stopped.img" 2
kill -STOP -- "-$server_pid"
sleep 0.1
kill -STOP -- "-$backup_pid"
kill -0 "$backup_pid" 2>/dev/null && [[ $(jq -r .state "$dir/stopped.img.nbdsnap-backup") == incomplete ]] ||
  fail "the backup ended before it could be stopped: $(cat "$dir/err")"
sleep 4
since=$(date +%s%N)
kill -CONT -- "-$backup_pid"
sleep 0.3
kill -CONT -- "-$server_pid"
finish_backup
((status == 0)) || fail "backup stopped for 4 s with --timeout 2 exited $status: $err"
cmp "$dir/disk.img" "$dir/stopped.img" || fail "the backup stopped and continued does not read as the origin"
[[ $(jq -r .state "$dir/stopped.img.nbdsnap-backup") == complete ]] ||
  fail "sidecar: $(cat "$dir/stopped.img.nbdsnap-backup")"
pass "backup stopped (with nbdsnapd) for 4 s under --timeout 2 completed after SIGCONT, same data as the origin"

# 2. nbdsnapd stopped until the backup ends: one --timeout (3 s) for the copy, at most 2 x 0.5 s for the
# failure path's question (backup_command.cpp, kSilentServerQuery), well below the two --timeouts it took.
start_backup "$dir/silent.img" 3
since=$(date +%s%N)
kill -STOP -- "-$server_pid"
finish_backup
kill -CONT -- "-$server_pid"
((status == 4)) || fail "backup with a stopped server exited $status, expected 4: $err"
((elapsed_ms >= 3000 && elapsed_ms < 5000)) ||
  fail "backup with a stopped server exited after $elapsed_ms ms, expected 3 s (--timeout) + at most 1 s: $err"
expect_err "no reply from the NBD server within 3 s \\(--timeout\\)"
expect_err "snapshot s may still exist"
expect_err "nbdsnap snapshot destroy s"
pass "backup whose server stops for good: exit 4 after $elapsed_ms ms with --timeout 3: $err"

# 3. As 2 with --json: the error object on stdout carries the whole message, nothing on stderr.
start_backup "$dir/silent-json.img" 1 --json
since=$(date +%s%N)
kill -STOP -- "-$server_pid"
finish_backup
kill -CONT -- "-$server_pid"
((status == 4)) || fail "backup --json with a stopped server exited $status, expected 4: $out $err"
[[ -z $err ]] || fail "backup --json with a stopped server printed on stderr: $err"
[[ $(jq_out .error.code) == timeout ]] || fail "backup --json: the error code is not timeout: $out"
jq_out .error.message | grep "snapshot s may still exist.*nbdsnap snapshot destroy s" >/dev/null ||
  fail "backup --json: the error message does not say what may be left: $out"
pass "backup --json whose server stops for good: exit 4, the error object says what may be left"

# 4. A restore of a qcow2 point into the origin's export, its server stopped once the copy began.
run_cli 0 backup --image "$(uri disk@s)" --to "$dir/chain" --format qcow2
setsid timeout -k 2 30 "$NBDSNAP" --timeout 1 restore "$dir/chain" --to "$(uri disk)" --connections 1 \
  --requests 1 --request-size 4K --progress 3 3>"$dir/progress" >"$dir/out" 2>"$dir/err" &
backup_pid=$!
track_pid "$backup_pid"
# Its first progress line past 0/100: one write may cover more than 1 % (CI once saw 2/100 first, and the
# restore then ran to its end while this waited for a 1/100 that never came).
await_copy_start "the restore" grep -E '^[1-9][0-9]*/100' "$dir/progress"
since=$(date +%s%N)
kill -STOP -- "-$server_pid"
finish_backup
kill -CONT -- "-$server_pid"
((status == 4)) || fail "restore into a stopped server exited $status, expected 4: $err"
[[ $err == *"$(uri disk): writing the target: no reply from the NBD server within 1 s (--timeout)"* ]] ||
  fail "restore into a stopped server does not name its target: $err"
[[ $err != *qemu-nbd* ]] || fail "restore into a stopped server blames the chain's qemu-nbd: $err"
pass "restore whose target stops answering: exit 4 naming the target: $err"

run_cli 0 snapshot info s  # nbdsnapd answers again after SIGCONT, and the snapshot is still there
stop_server
