# SPDX-License-Identifier: BSD-3-Clause
# lib.sh — shared by the reliability tests: a private directory, nbdsnapd or nbdkit + filter started in the
# background on Unix sockets with pid files, a control client, and cleanup that always runs (servers killed,
# tmpfs unmounted, directory removed).
#
# Provides: $dir, $sock, $ctl, $PY, $here; start_nbdsnapd ARGS...; start_nbdkit NAME ARGS...; kill_server
# [SIGNAL]; ctl JSON; ctl_error JSON; uri EXPORT; jf JSON EXPR; fail; pass; skip; known_bug; mount_tmpfs
# DIR SIZE; vmrss PID.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3  # Debian's Python has the nbd module
# The nbdsnap Python package of this source tree (python/nbdsnap): the tests' one control client.
export PYTHONPATH=$(cd "$here/../../python" && pwd)${PYTHONPATH:+:$PYTHONPATH}
dir=$(mktemp -d /tmp/nbdsnap-reliability.XXXXXX)
sock=$dir/nbd.sock
ctl=$dir/control.sock
server_pid=
server_log=
mounts=()
export LIBNBD_DEBUG=0

cleanup() {
  local status=$?
  set +e
  if [[ -n $server_pid ]]; then kill -KILL "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; fi
  for f in "$dir"/*.pid; do [[ -f $f ]] && kill -KILL "$(cat "$f")" 2>/dev/null; done
  if grep -lE 'ERROR: (Address|Thread|LeakSanitizer|UndefinedBehavior)Sanitizer|runtime error:' "$dir"/*.log 2>/dev/null; then
    echo "--- sanitizer report in a server log:"
    grep -hE -A30 'ERROR: (Address|Thread)Sanitizer|runtime error:' "$dir"/*.log | head -80
    [[ $status -ne 0 && $status -ne 77 ]] || status=1
  fi
  if [[ $status -ne 0 && $status -ne 77 ]]; then
    for f in "$dir"/*.log; do [[ -f $f ]] && { echo "--- $f (tail):"; tail -n 40 "$f"; }; done
  fi
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null; done
  rm -rf "$dir"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
skip() { echo "SKIP: $*"; exit 77; }
# known_bug TEXT: a check that fails because of a known bug in code this suite does not own; printed, counted.
known_bugs=0
known_bug() { echo "KNOWN BUG: $*"; known_bugs=$((known_bugs + 1)); }

wait_for() {
  local path=$1 pid=$2
  for _ in $(seq 600); do
    [[ -e $path ]] && return 0
    kill -0 "$pid" 2>/dev/null || fail "server exited before creating $path"
    sleep 0.1
  done
  fail "$path did not appear"
}

# start_nbdsnapd NAME ARGS...: nbdsnapd on $sock/$ctl; $NBDSNAPD is the binary. Log $dir/nbdsnapd-NAME.log.
start_nbdsnapd() {
  local name=$1; shift
  rm -f "$sock" "$ctl"
  server_log=$dir/nbdsnapd-$name.log
  setsid "$NBDSNAPD" --listen "unix:$sock" --control "$ctl" --threads 4 "$@" </dev/null >>"$server_log" 2>&1 &
  server_pid=$!
  echo "$server_pid" >"$dir/server.pid"
  wait_for "$sock" "$server_pid"
  wait_for "$ctl" "$server_pid"
}

# start_nbdkit NAME ARGS...: nbdkit -f with the filter ($FILTER) outermost; control socket $ctl. With a
# sanitizer runtime preloaded it adds -v (the stop checks look for the filter unloading) unless NBDKIT_VERBOSE= is set.
start_nbdkit() {
  local name=$1; shift
  case "$FILTER" in */*) ;; *) FILTER=./$FILTER ;; esac
  rm -f "$sock" "$ctl"
  server_log=$dir/nbdkit-$name.log
  setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit -f ${NBDSNAP_NBDKIT_PRELOAD:+${NBDKIT_VERBOSE--v}} -U "$sock" \
    --filter="$FILTER" "$@" nbdsnap-control="$ctl" </dev/null >>"$server_log" 2>&1 &
  server_pid=$!
  echo "$server_pid" >"$dir/server.pid"
  wait_for "$sock" "$server_pid"
  wait_for "$ctl" "$server_pid"
}

# kill_server [SIGNAL]: signals the server and waits for it; sets $server_status.
kill_server() {
  local signal=${1:-TERM}
  kill -"$signal" "$server_pid" 2>/dev/null || true
  if [[ $signal != KILL ]]; then
    for i in $(seq 300); do
      kill -0 "$server_pid" 2>/dev/null || break
      # nbdkit with a preloaded sanitizer runtime may hang in exit handlers once the filter unloaded (below).
      ((i > 30)) && [[ -n ${NBDSNAP_NBDKIT_PRELOAD:-} ]] && grep -q "nbdsnap: unloaded" "$server_log" && break
      sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      # With a sanitizer runtime preloaded into nbdkit, glibc's exit handlers sometimes deadlock after the
      # filter has unloaded (see client-tests/filter/lib.sh); anything else is a failure.
      if [[ -n ${NBDSNAP_NBDKIT_PRELOAD:-} ]] && grep -q "nbdsnap: unloaded" "$server_log"; then
        echo "note: nbdkit hung in exit handlers after the filter unloaded; killing it" >&2
        kill -KILL "$server_pid"; wait "$server_pid" 2>/dev/null || true
        server_pid= server_status=0; rm -f "$dir/server.pid"; return 0
      fi
      fail "server $server_pid did not stop within 30 s of SIG$signal"
    fi
  fi
  server_status=0
  wait "$server_pid" 2>/dev/null || server_status=$?
  server_pid=
  rm -f "$dir/server.pid"
}

server_alive() { [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; }

# One control client for all tests: the nbdsnap package (python3 -m nbdsnap prints the replies).
ctl() { "$PY" -m nbdsnap "$ctl" "$1"; }
ctl_error() { "$PY" -m nbdsnap --expect-error "$ctl" "$1"; }
uri() { echo "nbd+unix:///$1?socket=$sock"; }
# jf JSON EXPR: a Python expression over the parsed JSON `r`.
jf() { "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

# mount_tmpfs DIR SIZE: a private tmpfs, unmounted at exit; skips the test (77) when mounting is impossible.
mount_tmpfs() {
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2" tmpfs "$1" 2>/dev/null || skip "cannot mount a tmpfs (not root or no permission)"
  mounts+=("$1")
}

vmrss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }  # KiB
