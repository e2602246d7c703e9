#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-remote-sessions.sh — who may hold a control session, and for how long (issue 17's last findings):
# an identity of the --tls-psk file with no --control-role is refused right after its TLS handshake (one
# permission_denied reply naming it and the option, logged with its HOST:PORT) and never takes a session slot,
# so two such peers held open cannot lock out the operator under --control-max-sessions 2; an operator session
# that sends nothing is closed after --control-idle-timeout (logged as the refusals are: the first in full, then
# counted), while one waiting in events-wait is not
# idle; the Unix control socket has a session cap too (busy names --control-max-sessions); and a psk: rule
# naming a user the PSK file lacks is warned about at start and at each SIGHUP.
# Usage: test-cli-remote-sessions.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
requires gnutls-cli --version
tls_credentials=$(dirname "$0")/../tls-credentials.sh
"$tls_credentials" psk "$dir/keys.psk" agent1 norole || exit $?
control_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
truncate -s 4M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img" --tls-psk "$dir/keys.psk" \
  --control-listen "tcp:127.0.0.1:$control_port" --control-role 'operator psk:agent1' \
  --control-role 'read-only psk:ghost' --control-max-sessions 2 --control-idle-timeout 3
remote=(--connect "tls://agent1@127.0.0.1:$control_port" --tls-psk "$dir/keys.psk" --timeout 10)
for _ in $(seq 100); do grep "remote control (TLS) on" "$server_log" >/dev/null && break; sleep 0.1; done

# gnutls-cli as a raw PSK client: KEY of USER from the file, requests from stdin.
psk_client() {
  local user=$1 key
  key=$(awk -F: -v u="$user" '$1 == u {print $2}' "$dir/keys.psk")
  timeout 20 gnutls-cli --pskusername "$user" --pskkey "$key" --priority 'NORMAL:-KX-ALL:+ECDHE-PSK:+DHE-PSK:+PSK' \
    -p "$control_port" 127.0.0.1
}
established() { ss -Htn state established "( sport = :$control_port )" | wc -l; }

# A psk: rule naming a user the file lacks: warned about at start, and again at SIGHUP.
warning="--control-role 'read-only psk:ghost' can never match: the PSK file $dir/keys.psk has no key for 'ghost'"
(($(grep -cF -- "$warning" "$server_log") == 1)) || fail "no warning at start about psk:ghost missing from the PSK file"
kill -HUP "$server_pid"
for _ in $(seq 50); do (($(grep -cF -- "$warning" "$server_log") == 2)) && break; sleep 0.1; done
(($(grep -cF -- "$warning" "$server_log") == 2)) || fail "no warning at SIGHUP about psk:ghost missing from the PSK file"
pass "a psk: rule naming a user the PSK file lacks is warned about at start and at SIGHUP"

# Two roleless peers that would hold their connections for 10 s: each is refused at once, without a slot.
for i in 1 2; do
  { echo '{"command":"origins"}'; sleep 10; } | psk_client norole >"$dir/norole$i.out" 2>&1 &
  track_pid $!
done
for _ in $(seq 100); do
  (($(grep -c "permission_denied" "$dir"/norole{1,2}.out | awk -F: '{s += $2} END {print s}') == 2)) && break
  sleep 0.1
done
for i in 1 2; do
  grep -F '"code":"permission_denied"' "$dir/norole$i.out" | grep -F "psk:norole has no control role" |
    grep -F -- "--control-role" >/dev/null || fail "roleless peer $i did not get permission_denied: $(cat "$dir/norole$i.out")"
done
(($(established) == 0)) || fail "the roleless peers' connections are still open: $(established)"
run_cli 0 "${remote[@]}" origins
run_cli 0 "${remote[@]}" version
grep -E "remote control: refused psk:norole from 127\.0\.0\.1:[0-9]+: psk:norole has no control role" "$server_log" \
  >/dev/null || fail "the roleless refusal is not logged with the identity and HOST:PORT"
pass "identities without a control role are refused after the handshake and take no session slot"

# An operator session that says nothing is closed after --control-idle-timeout 3; two of them no longer lock
# out the others for good.
for i in 1 2; do
  sleep 10 | psk_client agent1 >"$dir/idle$i.out" 2>&1 &
  track_pid $!
done
for _ in $(seq 50); do (($(established) >= 2)) && break; sleep 0.1; done
sleep 0.5
run_cli 1 "${remote[@]}" origins
expect_err "already serves 2 remote control clients \(nbdsnapd --control-max-sessions\)"
for _ in $(seq 80); do (($(established) == 0)) && break; sleep 0.1; done
(($(established) == 0)) || fail "idle sessions were not closed after --control-idle-timeout 3"
# Logged as refusals are: the first in full, the second counted (summed up at shutdown, below).
(($(grep -cE "remote control: closed psk:agent1 from 127\.0\.0\.1:[0-9]+: no request for 3 s \(--control-idle-timeout 3\)" \
  "$server_log") == 1)) || fail "the first idle close is not logged in full once, or the second is too"
told() { grep -F '"code":"timeout"' "$dir/idle$1.out" | grep -F -- "--control-idle-timeout 3" >/dev/null; }
for i in 1 2; do  # ... and said to the client before the close, for its next request to find
  for _ in $(seq 50); do told "$i" && break; sleep 0.1; done
  told "$i" || fail "idle session $i was not told why it was closed: $(cat "$dir/idle$i.out")"
done
run_cli 0 "${remote[@]}" origins
# A client waiting for events longer than the idle timeout is not idle: its wait ends with its own timeout.
run_cli 0 "${remote[@]}" events --after 1000000 --wait 4
pass "idle remote sessions are closed after --control-idle-timeout, a waiting one is not"

# The Unix control socket: at most --control-max-sessions clients at once too.
/usr/bin/python3 - "$ctl" "$NBDSNAP" "$(dirname "$0")/../../python" >"$dir/unix.out" 2>&1 <<'PY' || fail "the Unix socket cap check failed: $(cat "$dir/unix.out")"
import json, socket, subprocess, sys
path = sys.argv[1]
held = []
for _ in range(2):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(b'{"command":"version"}\n')
    assert b'"ok":true' in s.recv(4096), "a held client got no reply"
    held.append(s)
third = socket.socket(socket.AF_UNIX)
third.settimeout(10)
third.connect(path)
reply = json.loads(third.makefile().readline())
assert reply["error"]["code"] == "busy", reply
assert "--control-max-sessions" in reply["error"]["message"], reply
print("busy:", reply["error"]["message"])
# The CLI shows that refusal too, every time: the server writes it and closes before the CLI's request
# arrives, and the CLI, failing to send (EPIPE), used to say "Broken pipe" instead of reading it.
for i in range(10):
    r = subprocess.run([sys.argv[2], "--control", path, "origins"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--control-max-sessions" in r.stderr, (i, r.returncode, r.stderr)
sys.path.insert(0, sys.argv[3])
import nbdsnap
for i in range(10):  # and so does the Python package
    try:
        nbdsnap.Client(path).origins()
        raise AssertionError("a client over the cap was served")
    except nbdsnap.Error as e:
        assert e.code == "busy", (i, e.code, str(e))
for s in held:
    s.close()
PY
cat "$dir/unix.out"
for _ in $(seq 20); do "$NBDSNAP" origins >/dev/null 2>&1 && break; sleep 0.1; done
run_cli 0 origins
grep -E "control socket: refused a local client: 2 sessions are open \(nbdsnapd --control-max-sessions 2\)" \
  "$server_log" >/dev/null || fail "the local busy refusal is not logged"
pass "the Unix control socket refuses one client over --control-max-sessions as busy"

# Clients killed while waiting in events-wait (Ctrl-C on `events --wait 3600`) give their sessions back within
# a couple of seconds, not at the end of the wait: else two of them lock everyone out for an hour.
for _ in 1 2; do
  timeout -s INT 1 "$NBDSNAP" events --after 1000000 --wait 3600 >/dev/null 2>&1 || true
  timeout -s INT 2 "$NBDSNAP" "${remote[@]}" events --after 1000000 --wait 3600 >/dev/null 2>&1 || true
done
sleep 2.5
run_cli_within 5 0 origins
run_cli_within 10 0 "${remote[@]}" origins
pass "clients that hang up during events-wait give their sessions back (Unix socket and remote)"
stop_server
grep -E "remote control: refused [0-9]+ connections in the last [0-9]+ s: .*2 closed idle after 3 s without a request" \
  "$server_log" >/dev/null || fail "the idle closes are not counted in the summary line"
pass "idle closes: the first logged in full, then counted"
