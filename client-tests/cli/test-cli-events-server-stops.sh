#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-events-server-stops.sh — `nbdsnap events --wait` and `events --follow` whose nbdsnapd stops (SIGTERM)
# while they wait: the server ends their waits at once with no event and closes the connection
# (docs/control.md, events-wait). Both must exit 4 within a few seconds, saying the server closed the
# connection and where to resume (--after N), never exit 0 with no event as if none had come within the wait
# (libnbdsnap's Client::Impl::still_open; an agent would then wait on a dead connection), nor only "send:
# Broken pipe" (--follow between two waits).
# Usage: test-cli-events-server-stops.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
use_front_end nbdsnapd "$2"

truncate -s 4M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img"
last=$("$NBDSNAP" --json events | jq -r '.last_sequence')
"$NBDSNAP" events --after "$last" --wait 60 >"$dir/wait.out" 2>"$dir/wait.err" &
wait_pid=$!
"$NBDSNAP" events --after "$last" --follow >"$dir/follow.out" 2>"$dir/follow.err" &
follow_pid=$!
sleep 1  # both waiting on the server
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not stop cleanly"
for run in wait follow; do
  pid_var=${run}_pid
  status=0
  timeout 10 tail --pid="${!pid_var}" -f /dev/null || fail "events --$run still runs 10 s after the server stopped"
  wait "${!pid_var}" || status=$?
  ((status == 4)) || fail "events --$run exited $status, not 4: $(cat "$dir/$run.err")"
  grep -q "server closed the connection" "$dir/$run.err" ||
    fail "events --$run does not say the server closed the connection: $(cat "$dir/$run.err")"
  grep -q "resume with after=$last" "$dir/$run.err" ||
    fail "events --$run does not say where to resume (after=$last): $(cat "$dir/$run.err")"
done
pass "events --wait and --follow exit 4 when nbdsnapd stops, saying where to resume"
