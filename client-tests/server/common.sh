# SPDX-License-Identifier: BSD-3-Clause
# common.sh — shared by the nbdsnapd integration tests: a private nbdsnapd on a Unix socket in a temporary
# directory, always stopped and removed on exit. Source it with the nbdsnapd binary path as $1.
#
# Provides: $tmp, $sock, $ctl, $state; start_nbdsnapd ORIGIN-ARGS...; stop_nbdsnapd [SIGNAL]; stop_nbdsnapd_timed;
# await_nbdsnapd_exit START_NS; control JSON...;
# uri EXPORT; json_field JSON PYTHON-EXPR; fail MESSAGE.
set -euo pipefail

nbdsnapd=${1:?usage: $0 PATH-TO-nbdsnapd}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The nbdsnap Python package of this source tree (python/nbdsnap): the tests' one control client.
export PYTHONPATH=$(cd "$here/../../python" && pwd)${PYTHONPATH:+:$PYTHONPATH}
tmp=$(mktemp -d /tmp/nbdsnapd-test.XXXXXX)
sock=$tmp/nbd.sock
ctl=$tmp/control.sock
state=$tmp/state
pidfile=$tmp/nbdsnapd.pid
log=$tmp/nbdsnapd.log
export LIBNBD_DEBUG=0

cleanup() {
  local status=$?
  if [[ -f $pidfile ]]; then
    kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
  fi
  if ((status != 0)) && [[ -f $log ]]; then
    echo "---- nbdsnapd log ----" >&2
    tail -n 50 "$log" >&2
  fi
  rm -rf "$tmp"
  exit $status
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# start_nbdsnapd ARGS...: starts nbdsnapd with the test's sockets and state dir and waits for the control socket.
start_nbdsnapd() {
  rm -f "$sock" "$ctl"  # stale sockets of a killed server must not look like a started one
  setsid "$nbdsnapd" --listen "unix:$sock" --control "$ctl" --state-dir "$state" --threads 4 "$@" \
    </dev/null >>"$log" 2>&1 &
  echo $! >"$pidfile"
  local i
  for ((i = 0; i < 600; i++)); do
    if [[ -S $ctl && -S $sock ]] && control '{"command":"version"}' >/dev/null 2>&1; then return 0; fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || fail "nbdsnapd exited at start"
    sleep 0.1
  done
  fail "nbdsnapd did not start"
}

# stop_nbdsnapd [SIGNAL]: sends SIGNAL (TERM) and waits for the process to exit; sets $stopped_status.
stop_nbdsnapd() {
  local signal=${1:-TERM} pid
  pid=$(cat "$pidfile")
  kill -"$signal" "$pid"
  stopped_status=0
  wait "$pid" || stopped_status=$?
  rm -f "$pidfile"
}

# await_nbdsnapd_exit START_NS: waits (at most 30 s, then SIGKILL) for nbdsnapd to exit; sets $stopped_status
# and $stop_ms, the milliseconds from START_NS (date +%s%N) to its exit.
await_nbdsnapd_exit() {
  local start=$1 pid
  pid=$(cat "$pidfile")
  while kill -0 "$pid" 2>/dev/null && (($(date +%s%N) - start < 30000000000)); do sleep 0.01; done
  stop_ms=$((($(date +%s%N) - start) / 1000000))
  kill -KILL "$pid" 2>/dev/null && echo "nbdsnapd still ran after 30 s: killed" >&2
  stopped_status=0
  wait "$pid" || stopped_status=$?
  rm -f "$pidfile"
}

# stop_nbdsnapd_timed: SIGTERM, then await_nbdsnapd_exit.
stop_nbdsnapd_timed() {
  local start
  start=$(date +%s%N)
  kill -TERM "$(cat "$pidfile")"
  await_nbdsnapd_exit "$start"
}

# cbt_state_is_clean ORIGIN: the origin's CBT state file (its JSON header line) says it was saved at a clean
# stop, and the log says so too.
cbt_state_is_clean() {
  grep -q 'stopped cleanly' "$log" &&
    head -n 1 "$state/$1.cbt" | /usr/bin/python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["clean"] else 1)'
}

# control JSON...: requests on one connection, a reply line each; fails if a reply is not ok (the nbdsnap package).
control() {
  /usr/bin/python3 -m nbdsnap "$ctl" "$@"
}

uri() {
  echo "nbd+unix:///$1?socket=$sock"
}

# json_field JSON EXPR: evaluates a Python expression over the parsed reply `r`.
json_field() {
  /usr/bin/python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

# snapshot NAME ORIGIN: creates and takes a snapshot with a 64 MiB difference storage file.
snapshot() {
  control "{\"command\":\"snapshot-create\",\"name\":\"$1\",\"origins\":[\"$2\"],\"storage\":[{\"path\":\"$tmp/$1.diff\",\"size\":67108864}]}" \
    "{\"command\":\"snapshot-take\",\"name\":\"$1\"}" >/dev/null
}
