#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-remote-limits.sh — nbdsnapd's remote control listener under idle TCP connections: 300 connections that
# never start TLS cost no thread each (the thread count of nbdsnapd stays bounded), the ones beyond the limit of
# connections waiting for a handshake close the oldest at once with one log line, a real CLI over TLS still
# works meanwhile, and the idle peers are dropped after --handshake-timeout (one log line for all). Authenticated
# sessions are capped by --control-max-sessions: one more gets a busy error naming the option.
# Usage: test-cli-remote-limits.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
tls_credentials=$(dirname "$0")/../tls-credentials.sh
"$tls_credentials" psk "$dir/keys.psk" agent1 || exit $?
control_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
truncate -s 4M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img" --tls-psk "$dir/keys.psk" \
  --control-listen "tcp:127.0.0.1:$control_port" --control-role 'read-only psk:agent1' \
  --handshake-timeout 3 --control-max-sessions 2
remote=(--connect "tls://agent1@127.0.0.1:$control_port" --tls-psk "$dir/keys.psk" --timeout 10)
for _ in $(seq 100); do grep -q "remote control (TLS) on" "$server_log" && break; sleep 0.1; done
run_cli 0 "${remote[@]}" origins
threads_before=$(ls "/proc/$server_pid/task" | wc -l)

# 300 idle connections (the limit of those waiting for a handshake is 128); the CLI runs while they are open.
timeout 60 /usr/bin/python3 - "$control_port" "$server_pid" "$NBDSNAP" "$dir/keys.psk" >"$dir/idle.out" <<'PY' ||
import os, select, socket, subprocess, sys, time
port, pid, nbdsnap, psk = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(300)]
time.sleep(1)
def closed(s):
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
print("threads", len(os.listdir(f"/proc/{pid}/task")))
print("closed_at_once", sum(closed(s) for s in conns))
cli = subprocess.run([nbdsnap, "--connect", f"tls://agent1@127.0.0.1:{port}", "--tls-psk", psk, "--timeout", "10",
                      "origins"], capture_output=True, text=True, timeout=30)
print("cli", cli.returncode, cli.stderr.strip().replace("\n", " "))
time.sleep(4.5)  # past --handshake-timeout 3
print("closed_after_deadline", sum(closed(s) for s in conns))
PY
  fail "the idle-connection client failed: $(cat "$dir/idle.out")"
cat "$dir/idle.out"
value() { awk -v k="$1" '$1 == k {print $2}' "$dir/idle.out"; }
(($(value threads) <= threads_before + 4)) ||
  fail "300 idle connections took threads: $(value threads) (before: $threads_before)"
(($(value closed_at_once) >= 300 - 128)) || fail "connections beyond the limit were not closed at once: $(value closed_at_once)"
[[ $(value cli) == 0 ]] || fail "the CLI over TLS failed among idle connections: $(grep '^cli' "$dir/idle.out")"
(($(value closed_after_deadline) == 300)) || fail "idle connections kept past --handshake-timeout: $(value closed_after_deadline)"
grep -c "connections are waiting for their TLS handshake (the limit)" "$server_log" | grep -x 1 >/dev/null ||
  fail "the closed excess did not make exactly one log line"
grep -c "no TLS handshake within 3 s" "$server_log" | grep -x 1 >/dev/null ||
  fail "the idle connections dropped did not make exactly one log line"
grep -q "remote control: closed 127.0.0.1:[0-9]*: no TLS handshake" "$server_log" ||
  fail "the log line does not name the peer"
pass "idle connections: bounded threads, the excess and the idle closed, the CLI served"

# Two sessions that stay (events --wait blocks on the server), a third client gets busy.
session_pids=()
for i in 1 2; do
  "$NBDSNAP" "${remote[@]}" events --after 1000000 --wait 4 >/dev/null 2>&1 &
  session_pids+=($!)
  track_pid $!
done
for _ in $(seq 100); do
  (($(ss -Htn state established "( sport = :$control_port )" | wc -l) >= 2)) && break
  sleep 0.1
done
sleep 0.5  # their handshakes take milliseconds
run_cli 1 "${remote[@]}" origins
expect_err "already serves 2 remote control clients \(nbdsnapd --control-max-sessions\)"
grep -q "refused psk:agent1 from 127.0.0.1:[0-9]*: 2 sessions are open" "$server_log" ||
  fail "the busy refusal is not logged with the peer"
for pid in "${session_pids[@]}"; do wait "$pid" 2>/dev/null || true; done  # their waits end after 4 s
for _ in $(seq 20); do "$NBDSNAP" "${remote[@]}" origins >/dev/null 2>&1 && break; sleep 0.1; done  # their ends
run_cli 0 "${remote[@]}" origins
pass "--control-max-sessions: one more session is refused as busy, and served once the others end"
stop_server
