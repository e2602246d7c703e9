#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-unresponsive-server.sh — no server can hang nbdsnap: a socket whose server accepts and never
# answers makes a control command and a backup give up after --timeout with a message naming the timeout (exit
# 4); a backup whose nbdsnapd stops answering mid-copy (SIGSTOP) ends with an error after --timeout, not a hang.
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
stop_server
