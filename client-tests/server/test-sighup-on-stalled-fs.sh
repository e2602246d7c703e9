#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-sighup-on-stalled-fs.sh — SIGHUP rereads the configuration file (and TLS credentials); with that file
# on a file system that stops answering (FUSE, as a hung NFS server) the reload waits, on a thread of its
# own: new clients are still served, a second SIGHUP is taken, and SIGTERM still stops nbdsnapd (it waits
# at most 5 s for the reload, then stops without it, saying so, with the CBT state saved). Before the fix the
# reload ran on the I/O thread that accepts clients and handles signals, and nbdsnapd served no new client
# and did not even begin to stop until the file system answered.
# Usage: test-sighup-on-stalled-fs.sh NBDSNAPD. Skips (77) without root, /dev/fuse or python3-fusepy.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
stallable_fs

truncate -s 4M "$dir/o.raw"
cat >"$sfs/nbdsnapd.conf" <<CONF
origin = o=$dir/o.raw
log-level = info
CONF
start_nbdsnapd --config "$sfs/nbdsnapd.conf"
timeout 10 nbdinfo "$(uri o)" >/dev/null || fail "origin o before the stall"
kill -HUP "$server_pid"
for ((i = 0; i < 100; i++)); do grep "log level info" "$server_log" >/dev/null && break; _nap 0.1; done
grep "log level info" "$server_log" >/dev/null || fail "the first SIGHUP did not reload"

stall_fs
_nap 2  # the kernel's cached attributes of the file expire (FUSE: 1 s)
kill -HUP "$server_pid"
_nap 1
timeout 10 nbdinfo "$(uri o)" >/dev/null || fail "a new client waited for a reload of a stalled configuration file"
timeout 10 "$PY" -m nbdsnap "$ctl" '{"command":"origins"}' >/dev/null || fail "the control socket did not answer"
kill -HUP "$server_pid"  # taken while the first waits: one more reload after it
timeout 10 nbdinfo "$(uri o)" >/dev/null || fail "a new client after a second SIGHUP"
pass "while a reload waits for its stalled configuration file, new clients are served"

# Not stop_server: its last resort (gdb) would hang on a thread stuck in the file system. The process's own
# exit still waits for the stalled read (the kernel cannot interrupt a FUSE request its server has taken,
# nor an NFS hard mount's), but everything that matters is done before: clients gone, CBT state saved.
_now_ns
started_ns=$now_ns
kill -TERM "$server_pid"
for ((i = 0; i < 150; i++)); do
  grep "a reload (SIGHUP) has waited 5 s" "$server_log" >/dev/null && break
  _nap 0.1
done
_now_ns
stopped_ms=$(((now_ns - started_ns) / 1000000))
grep "a reload (SIGHUP) has waited 5 s" "$server_log" >/dev/null ||
  { unstall_fs; fail "nbdsnapd did not stop within 15 s of SIGTERM while a reload waited"; }
grep "CBT state saved; stopped cleanly" "$server_log" >/dev/null || fail "the stop did not save the CBT state"
pass "SIGTERM stops nbdsnapd (CBT saved, the reload left) in $stopped_ms ms while a reload waits"
unstall_fs
for ((i = 0; i < 200; i++)); do kill -0 "$server_pid" 2>/dev/null || break; _nap 0.1; done
kill -0 "$server_pid" 2>/dev/null && fail "nbdsnapd did not exit once the file system answered"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=
((server_status == 0)) || fail "nbdsnapd exited $server_status"
