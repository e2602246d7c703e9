#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-control-socket-at-start.sh — the control socket is there as soon as nbdkit says it is ready: when
# `nbdkit --run` starts its command, and when nbdkit in its default background mode returns to the shell. Its
# first request then waits until the filter serves it. The socket used to appear only in .after_fork, after
# both: a hostile tester's first `snapshot create` failed with "No such file or directory" in 6 runs of 20
# (--run) and 4 of 20 (background). Ten rounds of each.
# Usage: test-control-socket-at-start.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

truncate -s 8M "$dir/disk.img"
preload=(env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD})
args=(--filter="$FILTER" file "$dir/disk.img" nbdsnap-control="$ctl" nbdsnap-state-dir="$dir/state")
request='{"command":"snapshot-create","name":"s","origins":["default"],"storage":[{"path":"'$dir/s.diff'","size":16777216}]}'

for ((round = 0; round < 10; round++)); do
  rm -f "$dir/run.out" "$sock"  # nbdkit leaves a -U socket it did not create in a directory of its own
  if ! timeout 60 "${preload[@]}" nbdkit -U "$sock" "${args[@]}" \
    --run "[ -S '$ctl' ] || echo 'no socket at the start' >'$dir/run.out'; '$PY' -m nbdsnap '$ctl' '$request' >>'$dir/run.out' 2>&1" \
    >>"$dir/run.log" 2>&1 || grep 'no socket' "$dir/run.out" >/dev/null; then
    fail "round $round: the --run command's first request failed: $(cat "$dir/run.out")"
  fi
  [[ ! -e $ctl ]] || fail "round $round: the control socket is left after nbdkit --run ended"
done
pass "nbdkit --run: the command's first control request is answered (10 rounds)"

for ((round = 0; round < 10; round++)); do
  rm -f "$dir/nbdkit.pid" "$sock"
  "${preload[@]}" nbdkit -P "$dir/nbdkit.pid" -U "$sock" "${args[@]}" >>"$dir/background.log" 2>&1 ||
    fail "round $round: nbdkit did not start: $(tail -n 5 "$dir/background.log")"
  [[ -S $ctl ]] || socket_missing=1  # the shell's first look, before any process could start
  # nbdkit's background process writes its pid file itself, maybe after its parent returned.
  for ((i = 0; i < 600; i++)); do [[ -s $dir/nbdkit.pid ]] && break; _nap 0.1; done
  pid=$(cat "$dir/nbdkit.pid") || fail "round $round: no pid file from nbdkit in 60 s"
  track_pid "$pid"
  ((!${socket_missing:-0})) || fail "round $round: no control socket when nbdkit returned"
  "$PY" -m nbdsnap "$ctl" "$request" >"$dir/first.out" 2>&1 ||
    fail "round $round: the first request right after nbdkit returned failed: $(cat "$dir/first.out")"
  kill -TERM "$pid"
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; _nap 0.1; done
  ! kill -0 "$pid" 2>/dev/null || fail "round $round: nbdkit did not stop within 30 s"
done
pass "nbdkit in the background: the first control request right after it returned is answered (10 rounds)"
