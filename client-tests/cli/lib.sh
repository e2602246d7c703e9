# SPDX-License-Identifier: BSD-3-Clause
# lib.sh — shared helpers of the nbdsnap CLI tests: a private directory, nbdsnapd (or nbdkit with the filter)
# started in the background on Unix sockets, assertions on exit codes and output, cleanup that always runs.
#
# Usage: NBDSNAP=path/to/nbdsnap; source lib.sh; start_nbdsnapd NBDSNAPD ARGS...
set -euo pipefail

NBDSNAP=${NBDSNAP:?NBDSNAP must name the nbdsnap binary}
dir=$(mktemp -d /tmp/nbdsnap-cli-test.XXXXXX)
sock=$dir/nbd.sock
export NBDSNAP_CONTROL=$dir/control.sock
server_pid=
background_pids=()

cleanup() {
  local status=$?
  for pid in "${background_pids[@]}" $server_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in "${background_pids[@]}" $server_pid; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ $status -ne 0 ]]; then
    echo "--- test failed ($status); server log:"
    tail -n 40 "$dir"/server*.log 2>/dev/null || true
  fi
  rm -rf "$dir"
  exit $status
}
trap cleanup EXIT INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

wait_for_socket() {  # PATH PID
  for _ in $(seq 600); do
    [[ -S $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || fail "server exited before creating $1"
    sleep 0.1
  done
  fail "$1 did not appear"
}

# start_nbdsnapd NBDSNAPD ARGS...: nbdsnapd on $sock with its control socket at $NBDSNAP_CONTROL.
start_nbdsnapd() {
  local binary=$1; shift
  rm -f "$sock" "$NBDSNAP_CONTROL"
  mkdir -p "$dir/state"
  setsid "$binary" --listen "unix:$sock" --control "$NBDSNAP_CONTROL" --state-dir "$dir/state" "$@" \
    </dev/null >"$dir/server.log" 2>&1 &
  server_pid=$!
  echo "$server_pid" >"$dir/server.pid"
  wait_for_socket "$sock" "$server_pid"
  wait_for_socket "$NBDSNAP_CONTROL" "$server_pid"
}

# start_nbdkit_filter FILTER.so PLUGIN ARGS...: nbdkit with the nbdsnap filter and its control socket.
start_nbdkit_filter() {
  local filter=$1; shift
  case "$filter" in */*) ;; *) filter=./$filter ;; esac
  rm -f "$sock" "$NBDSNAP_CONTROL"
  # NBDSNAP_NBDKIT_PRELOAD: the sanitizer runtime an instrumented filter needs, for nbdkit only (clients such as
  # qemu-io hang with it preloaded).
  setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} \
    nbdkit -f ${NBDSNAP_NBDKIT_PRELOAD:+-v} -U "$sock" -P "$dir/server.pid" --filter="$filter" "$@" \
    nbdsnap-control="$NBDSNAP_CONTROL" \
    </dev/null >"$dir/server-nbdkit.log" 2>&1 &
  server_pid=$!
  wait_for_socket "$sock" "$server_pid"
  wait_for_socket "$NBDSNAP_CONTROL" "$server_pid"
}

stop_server() {
  kill "$server_pid"
  for _ in $(seq 300); do
    kill -0 "$server_pid" 2>/dev/null || { server_pid=; return 0; }
    # Under a preloaded sanitizer nbdkit can hang in glibc's exit handlers after the filter has unloaded
    # cleanly (see client-tests/filter/lib.sh); once the filter says so, nothing of ours is left to check.
    if [[ -n ${NBDSNAP_NBDKIT_PRELOAD:-} ]] && grep -qs "nbdsnap: unloaded, CBT state saved" "$dir/server-nbdkit.log"; then
      kill -9 "$server_pid" 2>/dev/null; server_pid=; return 0
    fi
    sleep 0.1
  done
  fail "server $server_pid did not stop"
}

uri() { echo "nbd+unix:///$1?socket=$sock"; }

# run_cli EXPECTED-STATUS ARGS...: runs nbdsnap, leaves stdout in $out and stderr in $err, checks the status.
run_cli() {
  local want=$1; shift
  local status=0
  "$NBDSNAP" "$@" >"$dir/out" 2>"$dir/err" || status=$?
  out=$(cat "$dir/out")
  err=$(cat "$dir/err")
  if [[ $status -ne $want ]]; then
    echo "stdout: $out" >&2
    echo "stderr: $err" >&2
    fail "nbdsnap $* exited $status, expected $want"
  fi
}

# run_cli_within SECONDS EXPECTED-STATUS ARGS...: run_cli, but nbdsnap is killed after SECONDS (a hang fails the
# test with status 124 instead of holding it up); leaves the run's duration in $elapsed_ms.
run_cli_within() {
  local limit=$1 want=$2; shift 2
  local status=0 start
  start=$(date +%s%N)
  timeout -k 2 "$limit" "$NBDSNAP" "$@" >"$dir/out" 2>"$dir/err" || status=$?
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  out=$(cat "$dir/out")
  err=$(cat "$dir/err")
  if [[ $status -ne $want ]]; then
    echo "stdout: $out" >&2
    echo "stderr: $err" >&2
    ((status == 124)) && fail "nbdsnap $* still ran after $limit s (killed)"
    fail "nbdsnap $* exited $status, expected $want"
  fi
}

# expect_out REGEX / expect_err REGEX: the last run_cli's stdout / stderr matches (grep -E).
expect_out() { grep -Eq -- "$1" <<<"$out" || fail "stdout lacks /$1/: $out"; }
expect_err() { grep -Eq -- "$1" <<<"$err" || fail "stderr lacks /$1/: $err"; }
# json_field FILTER: applies a jq filter to the last stdout.
json_field() { jq -r "$1" <<<"$out"; }
# write PATTERN OFFSET LENGTH EXPORT: writes a byte pattern through NBD.
write() { qemu-io -f raw -c "write -P $1 $2 $3" "$(uri "$4")" >/dev/null; }
