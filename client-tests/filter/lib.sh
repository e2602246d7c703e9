# SPDX-License-Identifier: BSD-3-Clause
# lib.sh — shared helpers of the nbdkit filter tests: a private directory, nbdkit started in the background
# with the nbdsnap filter, the control protocol, and cleanup that always runs.
#
# Usage: FILTER=path/to/nbdkit-nbdsnap-filter.so; source lib.sh; start_nbdkit [nbdkit args...]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FILTER=${FILTER:?FILTER must name nbdkit-nbdsnap-filter.so}
case "$FILTER" in */*) ;; *) FILTER=./$FILTER ;; esac  # nbdkit loads a filter by path only with a slash
PY=/usr/bin/python3  # Debian's Python has the nbd module
# The nbdsnap Python package of this source tree (python/nbdsnap): the tests' one control client.
export PYTHONPATH=$(cd "$here/../../python" && pwd)${PYTHONPATH:+:$PYTHONPATH}
dir=$(mktemp -d /tmp/nbdsnap-filter-test.XXXXXX)
sock=$dir/nbd.sock
ctl_sock=$dir/control.sock
pids=()

cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  # A sanitizer report in nbdkit's log fails the test even when every check passed.
  if grep -lE 'ERROR: (Address|Thread)Sanitizer|runtime error:' "$dir"/nbdkit*.log 2>/dev/null; then
    echo "--- sanitizer report in nbdkit's log:"
    grep -hE -A30 'ERROR: (Address|Thread)Sanitizer|runtime error:' "$dir"/nbdkit*.log | head -80
    [[ $status -ne 0 ]] || status=1
  fi
  if [[ $status -ne 0 ]]; then
    echo "--- test failed ($status); nbdkit log:"
    tail -n 60 "$dir"/nbdkit*.log 2>/dev/null || true
  fi
  rm -rf "$dir"
  exit $status
}
trap cleanup EXIT INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# Waits until a file exists (a socket nbdkit or the filter creates), or fails after a long grace period.
wait_for() {
  local path=$1 pid=$2
  for _ in $(seq 600); do
    [[ -e $path ]] && return 0
    kill -0 "$pid" 2>/dev/null || fail "nbdkit exited before creating $path"
    sleep 0.1
  done
  fail "$path did not appear"
}

# start_nbdkit NAME ARGS...: runs nbdkit -f on $sock with the filter first; logs to $dir/nbdkit-NAME.log.
start_nbdkit() {
  local name=$1; shift
  rm -f "$sock" "$ctl_sock"
  # NBDSNAP_NBDKIT_PRELOAD: a sanitizer runtime an instrumented filter needs, for nbdkit only (clients such as
  # qemu-io misbehave with it preloaded).
  setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit -f -v -U "$sock" -P "$dir/nbdkit-$name.pid" --filter="$FILTER" "$@" \
    nbdsnap-control="$ctl_sock" </dev/null >"$dir/nbdkit-$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_for "$sock" "$pid"
  wait_for "$ctl_sock" "$pid"
  nbdkit_pid=$pid
  nbdkit_log=$dir/nbdkit-$name.log
}

stop_nbdkit() {
  kill "$nbdkit_pid"
  for _ in $(seq 300); do kill -0 "$nbdkit_pid" 2>/dev/null || return 0; sleep 0.1; done
  # With a sanitizer runtime preloaded into nbdkit, glibc's exit handlers (p11-kit's freelocale) sometimes
  # deadlock after everything of ours is done; the filter's part of the shutdown is what the tests check.
  if [[ -n ${NBDSNAP_NBDKIT_PRELOAD:-} ]] && grep -q "nbdsnap: unloaded, CBT state saved" "$nbdkit_log"; then
    echo "note: nbdkit hung in exit handlers after the filter unloaded; killing it" >&2
    kill -9 "$nbdkit_pid"
    wait "$nbdkit_pid" 2>/dev/null || true
    return 0
  fi
  if command -v gdb >/dev/null; then  # show where it is stuck
    gdb -p "$nbdkit_pid" -batch -ex 'thread apply all bt 15' 2>/dev/null | grep -E '^#|^Thread' >&2 || true
  fi
  fail "nbdkit $nbdkit_pid did not stop"
}

# ctl JSON: one control request; prints the reply; fails unless it is {"ok": true}.
ctl() { "$PY" -m nbdsnap "$ctl_sock" "$1"; }
# ctl_error JSON: a request that must fail; prints the reply.
ctl_error() { "$PY" -m nbdsnap --expect-error "$ctl_sock" "$1"; }

uri() { echo "nbd+unix:///$1?socket=$sock"; }
