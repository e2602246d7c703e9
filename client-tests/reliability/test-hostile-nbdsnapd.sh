#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-hostile-nbdsnapd.sh — hostile NBD and control clients (hostile.py) against nbdsnapd: it stays up, its
# memory stays bounded, a good client keeps working.
# Usage: test-hostile-nbdsnapd.sh NBDSNAPD [--rounds N]
NBDSNAPD=${1:?usage: $0 NBDSNAPD [--rounds N]}; shift
source "$(dirname "$0")/../functions.sh"
parse_rounds 2 "$@"
mkdir "$dir/state"
truncate -s 64M "$dir/a.raw"
# A small session cap, so the control abuse meets the busy refusal every run (the test client holds one).
start_nbdsnapd --log hostile --state-dir "$dir/state" --origin "a=$dir/a.raw" --control-max-sessions 3
"$PY" -c "import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b'\x5a'*2097152, 0); h.flush(); h.shutdown()" "$(uri a)"
ctl '{"command":"snapshot-create","name":"s","origins":["a"],"storage":[{"path":"'"$dir"'/s.diff","size":67108864}]}' >/dev/null
ctl '{"command":"snapshot-take","name":"s"}' >/dev/null
"$PY" "$here/hostile.py" "$sock" "$ctl" "$server_pid" "$rounds"
server_alive || fail "nbdsnapd died"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not stop cleanly ($server_status)"
pass "hostile clients, $rounds round(s)"
