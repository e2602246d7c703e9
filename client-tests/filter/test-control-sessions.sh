#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-control-sessions.sh — the filter's control socket serves at most nbdsnap-control-max-sessions clients
# (issue 17; it was a fixed 32): one more gets `busy`, naming the parameter and the limit in words that fit it
# ("serves 1 client"); the held session keeps being served, and the next client is once it is closed.
# Usage: test-control-sessions.sh FILTER.so
FILTER=$1
source "$(dirname "$0")/../functions.sh"
requires nbdkit --version
start_filter memory 4M nbdsnap-control-max-sessions=1
"$PY" - "$ctl" >"$dir/sessions.out" 2>&1 <<'PY' || fail "the session cap check failed: $(cat "$dir/sessions.out")"
import json, socket, sys
path = sys.argv[1]
def connect():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    return s
held = connect()
held.sendall(b'{"command":"version"}\n')
assert b'"ok":true' in held.recv(4096), "the held client got no reply"
second = connect()
reply = json.loads(second.makefile().readline())
assert reply["error"]["code"] == "busy", reply
message = reply["error"]["message"]
assert "serves 1 client on this control socket (nbdkit nbdsnap-control-max-sessions)" in message, message
print("busy:", message)
held.sendall(b'{"command":"version"}\n')
assert b'"ok":true' in held.recv(4096), "the held client is no longer served"
held.close()
PY
cat "$dir/sessions.out"
for _ in $(seq 50); do ctl '{"command":"version"}' >/dev/null 2>&1 && break; sleep 0.1; done
ctl '{"command":"version"}' >/dev/null || fail "no client served once the held session closed"
stop_server
pass "nbdsnap-control-max-sessions=1: one more client is busy, named in the singular with the parameter"
