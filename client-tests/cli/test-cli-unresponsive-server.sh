#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-unresponsive-server.sh — no server can hang nbdsnap: a socket whose server accepts and never
# answers makes a control command and a backup give up after --timeout with a message naming the timeout (exit
# 4); a backup whose nbdsnapd stops answering mid-copy (SIGSTOP) ends with an error after --timeout, not a hang,
# also when qemu-img convert reads the image (a full qcow2 point).
# Usage: test-cli-unresponsive-server.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

# A listener that accepts every connection and never reads or writes (bounded: it exits after 60 s).
silent=$dir/silent.sock
/usr/bin/python3 - "$silent" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(64)
s.settimeout(60)
held, deadline = [], time.monotonic() + 60
try:
    while time.monotonic() < deadline:
        held.append(s.accept()[0])
except OSError:
    pass
PY
track_pid $!
for _ in $(seq 100); do [[ -S $silent ]] && break; sleep 0.05; done
[[ -S $silent ]] || fail "the silent listener did not start"

run_cli_within 20 4 --control "$silent" --timeout 1 origins
expect_err "no reply to origins within 1 s \\(--timeout\\)"
((elapsed_ms >= 1000 && elapsed_ms < 5000)) || fail "control request gave up after $elapsed_ms ms"
pass "control socket that never answers: exit 4 after $elapsed_ms ms: $err"

run_cli_within 20 4 --timeout 1 backup --image "nbd+unix:///disk?socket=$silent" --to "$dir/never.img"
expect_err "no NBD handshake within 1 s \\(--timeout\\)"
((elapsed_ms >= 1000 && elapsed_ms < 5000)) || fail "NBD handshake gave up after $elapsed_ms ms"
pass "NBD socket that never answers: exit 4 after $elapsed_ms ms: $err"

run_cli_within 5 2 --timeout 0 origins
expect_err "--timeout '0': give seconds, more than 0"
pass "--timeout 0 is refused"

# A backup that loses its server mid-copy: 64 MiB of data read 4 KiB at a time, one read in flight.
truncate -s 64M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img"
write 0x5c 0 64M disk
run_cli 0 snapshot create s --origin disk --storage "$dir/s.diff:16M"
run_cli 0 snapshot take s
backup=$dir/backup.img
start=$(date +%s%N)
timeout -k 2 30 "$NBDSNAP" --timeout 2 backup --image "$(uri disk@s)" --to "$backup" \
  --connections 1 --requests 1 --request-size 4K >"$dir/out" 2>"$dir/err" &
backup_pid=$!
track_pid "$backup_pid"
for _ in $(seq 500); do [[ -e $backup.nbdsnap-backup ]] && break; sleep 0.01; done  # the copy has begun
kill -STOP "$server_pid"
status=0
wait "$backup_pid" || status=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
kill -CONT "$server_pid"
err=$(cat "$dir/err")
((status != 124)) || fail "the backup still ran 30 s after nbdsnapd stopped answering (killed)"
((status == 4)) || fail "backup with a stopped server exited $status, expected 4: $err"
expect_err "no reply from the NBD server within 2 s \\(--timeout\\)"
[[ $(jq -r .state "$backup.nbdsnap-backup") == incomplete ]] || fail "sidecar: $(cat "$backup.nbdsnap-backup")"
pass "backup whose server stops answering: exit 4 after $elapsed_ms ms: $err"

run_cli 0 origins  # nbdsnapd serves again after SIGCONT

# The same for a full qcow2 point, which qemu-img convert writes reading the image itself: QEMU's NBD client
# waits for replies without a bound, so nbdsnap must notice that qemu-img does nothing and stop it. 512 MiB
# of data, so that the copy is still running when the server is stopped.
if command -v qemu-img >/dev/null; then
  truncate -s 512M "$dir/big.img"
  qemu-io -f raw -c "write -P 0x3c 0 512M" "$dir/big.img" >/dev/null
  run_cli 0 origin attach big "$dir/big.img"
  run_cli 0 snapshot create q --origin big --storage "$dir/q.diff:16M"
  run_cli 0 snapshot take q
  start=$(date +%s%N)
  timeout -k 2 30 "$NBDSNAP" --timeout 2 backup --image "$(uri big@q)" --to "$dir/chain" --format qcow2 \
    >"$dir/out" 2>"$dir/err" &
  backup_pid=$!
  track_pid "$backup_pid"
  converter=  # qemu-img, a child of nbdsnap, a child of timeout
  for _ in $(seq 1000); do
    cli_pid=$(pgrep -P "$backup_pid" -x nbdsnap) && converter=$(pgrep -P "$cli_pid" -x qemu-img) && break
    sleep 0.005
  done
  [[ -n $converter ]] || fail "qemu-img convert did not start: $(cat "$dir/err")"
  kill -STOP "$server_pid"
  status=0
  wait "$backup_pid" || status=$?
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  kill -CONT "$server_pid"
  err=$(cat "$dir/err")
  ((status != 124)) || fail "the qcow2 backup still ran 30 s after nbdsnapd stopped answering (killed)"
  ((status == 4)) || fail "qcow2 backup with a stopped server exited $status, expected 4: $err"
  expect_err "qemu-img showed no sign of work within 2 s \\(--timeout\\)"
  ! kill -0 "$converter" 2>/dev/null || fail "qemu-img convert (pid $converter) still runs after the backup failed"
  [[ ! -e $dir/chain/0001.qcow2 ]] || fail "the failed point's file was left behind: $(ls -l "$dir/chain")"
  pass "qcow2 backup whose server stops answering under qemu-img: exit 4 after $elapsed_ms ms, qemu-img gone: $err"
  run_cli 0 --json backup --image "$(uri big@q)" --to "$dir/chain" --format qcow2
  [[ $(jq_out .point) == 0001 ]] || fail "the next backup after SIGCONT: $out"
  pass "the next qcow2 backup, with nbdsnapd answering again, wrote point 0001"
fi
stop_server
