# SPDX-License-Identifier: BSD-3-Clause
# functions.sh — the one harness of the shell integration tests (client-tests/*/test-*.sh): a private
# directory, nbdsnapd or nbdkit + the nbdsnap filter started on Unix sockets with bounded waits, stopped by pid,
# the control client, the nbdsnap CLI runner, URIs, skips, cleanup hooks, and the sanitizer-log scan. Modelled on
# nbdkit's tests/functions.sh (requires, cleanup_fn, start_nbdkit).
#
# Use: set the binary the test runs, then source this file:
#   NBDSNAPD=path/nbdsnapd | FILTER=path/filter.so | NBDSNAP=path/nbdsnap;  source "$(dirname "$0")/../functions.sh"
# or, for a scenario run against both front ends (CMake registers it once per front end):
#   source "$(dirname "$0")/../functions.sh"; use_front_end "$1" "$2"   # nbdsnapd NBDSNAPD | filter FILTER.so
#
# Provides
#   $dir (private directory, removed at exit), $sock (NBD socket), $ctl (control socket, also exported as
#   $NBDSNAP_CONTROL for the CLI), $state ($dir/state), $here (the test's directory), $PY (Debian's python3,
#   which has `import nbd`; PYTHONPATH holds python/ for `import nbdsnap` and client-tests/ for `import nbd_raw`)
#   requires CMD [ARGS] / requires_root       skip the test (exit 77) when the command fails / not root
#   skip TEXT, fail TEXT, pass TEXT, known_bug TEXT ($known_bugs counts them)
#   cleanup_fn CMD [ARGS]                     run CMD at exit, last registered first ($test_status: the exit status)
#   track_pid PID                             a background process of the test: stopped at exit
#   start_nbdsnapd [--log NAME] ARGS          nbdsnapd on $sock/$ctl (adds --state-dir $state and --threads 4
#                                             unless ARGS has them); log $dir/nbdsnapd[-NAME].log, appended
#   start_filter [--log NAME] ARGS            nbdkit -f -v with $FILTER outermost, nbdsnap-control=$ctl; log
#                                             $dir/nbdkit[-NAME].log, appended
#   use_front_end nbdsnapd|filter BINARY      sets $FRONT_END and $NBDSNAPD or $FILTER
#   start_server ARGS                         start_nbdsnapd or start_filter, by $FRONT_END
#   $server_pid, $server_log, server_alive
#   stop_server [SIGNAL]                      SIGNAL (TERM), then a bounded wait (STOP_TIMEOUT); sets
#                                             $server_status and $stop_ms (milliseconds to the exit)
#   show_stacks PID                           where each thread of PID waits (state, wchan, gdb), on stderr
#   await_log PATTERN SECONDS [FILE]          a line matching PATTERN in FILE ($server_log), waited for
#   expect_refused_write URI LOG PATTERN PID  a qemu-io write refused, LOG saying why (PATTERN)
#   stop_server_timed / await_server_exit NS  SIGTERM / the wait alone, from START_NS (date +%s%N)
#   ctl JSON...   ctl_error JSON              control requests (fail unless ok / unless an error)
#   ctl_waiting NAME JSON..., still_waiting NAME WHY, ctl_waited NAME   requests left waiting in the background
#   jf JSON EXPR                              a Python expression over the parsed JSON `r`
#   uri EXPORT, image_uri ORIGIN SNAPSHOT     nbd+unix URIs on $sock
#   snapshot NAME ORIGIN                      create + take with a 64 MiB storage file $dir/NAME.diff
#   cbt_state_is_clean ORIGIN                 the CBT state file and the log say: stopped cleanly (nbdsnapd)
#   cbt_file_is_clean ORIGIN                  the CBT state file says: saved by a clean stop (either front end)
#   run_cli STATUS ARGS, run_cli_within SECONDS STATUS ARGS, expect_out RE, expect_err RE, jq_out FILTER
#   write PATTERN OFFSET LENGTH EXPORT        qemu-io write through NBD
#   mount_tmpfs DIR SIZE, vmrss PID, parse_rounds DEFAULT ARGS (the reliability scripts' --rounds N)
#   freezable_fs SIZE, freeze_fs, thaw_fs    an ext4 on $fs whose writes stop answering
#   stallable_fs, stall_fs, unstall_fs        a FUSE file system on $sfs that stops answering everything
# Environment: KEEP_TEST_DIR=1 keeps $dir (logs, images) after the test; STOP_TIMEOUT (30) bounds stop_server in
# seconds; NBDKIT_VERBOSE (unset: -v) the verbosity option of start_filter; NBDSNAP_NBDKIT_PRELOAD (set by CMake in
# sanitizer builds) the runtime preloaded into nbdkit.
#
# Porting guide (old helper -> here):
#   server/common.sh: source common.sh "$1"    -> NBDSNAPD=$1; source ../functions.sh
#     $tmp -> $dir; $log -> $server_log; $pidfile -> $server_pid; control -> ctl; json_field -> jf;
#     stop_nbdsnapd [SIG] -> stop_server [SIG]; stopped_status -> server_status;
#     stop_nbdsnapd_timed -> stop_server_timed; await_nbdsnapd_exit -> await_server_exit
#   filter/lib.sh: FILTER=$1; source lib.sh    -> FILTER=$1; source ../functions.sh
#     start_nbdkit NAME ARGS -> start_filter --log NAME ARGS; stop_nbdkit -> stop_server;
#     $ctl_sock -> $ctl; $nbdkit_pid -> $server_pid; $nbdkit_log -> $server_log; pids+=(P) -> track_pid P;
#     wait_for PATH PID -> wait_for_path PATH PID
#   cli/lib.sh: NBDSNAP=$1; source lib.sh      -> NBDSNAP=$1; source ../functions.sh
#     start_nbdsnapd BINARY ARGS -> NBDSNAPD=BINARY; start_nbdsnapd ARGS;
#     start_nbdkit_filter SO ARGS -> FILTER=SO; start_filter ARGS; json_field -> jq_out;
#     background_pids+=(P) -> track_pid P; wait_for_socket PATH PID -> wait_for_path PATH PID
#   vm/lib.sh keeps the guest helpers on top of this file; $tmp -> $dir
#   reliability/lib.sh: source lib.sh          -> source ../functions.sh
#     start_nbdsnapd NAME ARGS -> start_nbdsnapd --log NAME ARGS; start_nbdkit NAME -> start_filter --log NAME;
#     kill_server [SIG] -> stop_server [SIG]; NBDKIT_VERBOSE= start_nbdkit -> NBDKIT_VERBOSE= start_filter
#   raw NBD in Python (recv_exact, IHAVEOPT options, NBD_OPT_GO, requests) -> client-tests/nbd_raw.py
set -euo pipefail

# Every test runs under client-tests/watchdog.py, which starts the script again: a test's lines before this
# `source` run twice and should only set variables. The shell's own command line gives the script and its
# arguments as they were given (a test may have shifted them). The watchdog reaps what the test leaves running,
# orphans included, and with NBDSNAP_TEST_TIMEOUT (ctest's TIMEOUT, passed by nbdsnap_pass_test_timeouts) ends a
# hung test before ctest does, printing where each of its processes waits.
if [[ -z ${_NBDSNAP_UNDER_WATCHDOG:-} ]]; then
  if [[ $BASHPID != "$$" ]]; then
    echo "functions.sh: source it in the test's own shell, not in a subshell (it starts the test again)" >&2
    exit 2
  fi
  if [[ ! -e $0 ]]; then
    echo "functions.sh: $0 is not found from $PWD: source functions.sh before changing directory" >&2
    exit 2
  fi
  export _NBDSNAP_UNDER_WATCHDOG=1
  mapfile -d '' _command_line </proc/$$/cmdline
  exec /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/watchdog.py" "$BASH" "${_command_line[@]:1}"
fi

# Binaries given before sourcing are made absolute: a test may cd into its directory (nbdkit resolves relative
# storage paths from there).
for _binary in NBDSNAPD FILTER NBDSNAP; do
  if [[ -n ${!_binary:-} ]]; then printf -v "$_binary" '%s' "$(realpath "${!_binary}")"; fi
done
top=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
export PYTHONPATH=$(cd "$top/../python" && pwd):$top${PYTHONPATH:+:$PYTHONPATH}
export LIBNBD_DEBUG=0
dir=$(mktemp -d "/tmp/nbdsnap-$(basename "$0" .sh).XXXXXX")
sock=$dir/nbd.sock
ctl=$dir/control.sock
export NBDSNAP_CONTROL=$ctl
state=$dir/state
server_pid=
server_log=
server_status=
known_bugs=0
_cleanup_hooks=()
_tracked_pids=()
_mounts=()

# (fail says when: a test that failed after minutes on a loaded machine tells which part was slow.)
fail() { echo "FAIL: $* (${SECONDS} s into the test)" >&2; exit 1; }
pass() { echo "ok: $*"; }
skip() { echo "SKIP: $*"; exit 77; }  # ctest's SKIP_RETURN_CODE (set for every test in the CMakeLists)
# known_bug TEXT: a check that fails because of a known bug in code this suite does not own; printed, counted.
known_bug() { echo "KNOWN BUG: $*"; known_bugs=$((known_bugs + 1)); }

# requires CMD [ARGS]: runs the command quietly; the test is skipped when it fails (a tool is missing).
requires() { "$@" >/dev/null 2>&1 || skip "'$*' failed: $1 is needed"; }
requires_root() { ((EUID == 0)) || skip "needs root"; }

# cleanup_fn CMD [ARGS]: CMD runs at exit (pass or fail), before the servers stop; the last registered first.
cleanup_fn() {
  local quoted
  printf -v quoted '%q ' "$@"
  _cleanup_hooks+=("$quoted")
}
track_pid() { _tracked_pids+=("$1"); }

# _nap SECONDS: sleeps without starting a process. The wait loops below poll every 10-100 ms, often for
# seconds; a `sleep` (and a `date`) process per poll was a fork and an exec each time, ~4,000 of them a minute
# in a loaded CI run of two cores. read times out on a pipe that this shell holds open for writing too, so no
# data and no end of file ever come; servers are started with the descriptor closed.
exec {_nap_fd}<> <(:)
_nap() { read -r -t "$1" -u "$_nap_fd" || true; }
# _now_ns: sets $now_ns to the wall clock in nanoseconds, as `date +%s%N` prints it, without a process.
_now_ns() { now_ns=${EPOCHREALTIME//[!0-9]/}000; }

# _stop_pid PID: SIGTERM, at most 10 s, then SIGKILL (processes this test started only).
_stop_pid() {
  kill -TERM "$1" 2>/dev/null || return 0
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$1" 2>/dev/null || break
    _nap 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# The sanitizer reports a log may hold: ASan, LSan, UBSan (runtime error), TSan (warnings are its reports).
_sanitizer_re='ERROR: (Address|Thread|Leak|UndefinedBehavior)Sanitizer|WARNING: ThreadSanitizer|runtime error:'

_run_cleanup_hooks() {
  local status=$? i pid
  set +e
  test_status=$status
  for ((i = ${#_cleanup_hooks[@]} - 1; i >= 0; i--)); do eval "${_cleanup_hooks[i]}"; done
  for pid in "${_tracked_pids[@]}" $server_pid; do _stop_pid "$pid"; done
  # A sanitizer report in a server's log fails the test even when every check passed.
  if grep -lE "$_sanitizer_re" "$dir"/*.log 2>/dev/null; then
    echo "--- sanitizer report in a server log:"
    grep -hE -A30 "$_sanitizer_re" "$dir"/*.log | sed -n 1,80p
    ((status != 0 && status != 77)) || status=1
  fi
  if ((status != 0 && status != 77)); then
    for f in "$dir"/*.log; do [[ -f $f ]] && { echo "--- $f (tail):"; tail -n 50 "$f"; }; done
  fi
  for m in "${_mounts[@]}"; do umount -l "$m"; done
  if [[ ${KEEP_TEST_DIR:-0} == 1 ]]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
  exit $status
}
trap _run_cleanup_hooks EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP  # (a closed terminal: the cleanup runs as for ^C)

# wait_for_path PATH PID: waits (at most 60 s) for PATH to exist; fails if PID exits first.
wait_for_path() {
  local i
  for ((i = 0; i < 600; i++)); do
    [[ -e $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || fail "the server (pid $2) exited before creating $1"
    _nap 0.1
  done
  fail "$1 did not appear within 60 s"
}

# _await_ready: both sockets exist and the control socket answers (at most 60 s).
_await_ready() {
  wait_for_path "$sock" "$server_pid"
  wait_for_path "$ctl" "$server_pid"
  local i
  for ((i = 0; i < 600; i++)); do
    "$PY" -m nbdsnap "$ctl" '{"command":"version"}' >/dev/null 2>&1 && return 0
    kill -0 "$server_pid" 2>/dev/null || fail "the server exited at start"
    _nap 0.1
  done
  fail "the control socket $ctl did not answer within 60 s"
}

# _log_name PREFIX ARGS: the log file ($dir/PREFIX[-NAME].log) of a start with an optional --log NAME.
_log_name() { if [[ ${2:-} == --log ]]; then echo "$dir/$1-$3.log"; else echo "$dir/$1.log"; fi; }

# start_nbdsnapd [--log NAME] ARGS...: nbdsnapd ($NBDSNAPD) on $sock and $ctl, ready when it returns.
start_nbdsnapd() {
  server_log=$(_log_name nbdsnapd "$@")
  [[ ${1:-} != --log ]] || shift 2
  local defaults=()
  [[ " $* " == *" --state-dir "* ]] || { mkdir -p "$state"; defaults+=(--state-dir "$state"); }
  [[ " $* " == *" --threads "* ]] || defaults+=(--threads 4)
  rm -f "$sock" "$ctl"  # stale sockets of a killed server must not look like a started one
  setsid "${NBDSNAPD:?NBDSNAPD must name nbdsnapd}" --listen "unix:$sock" --control "$ctl" "${defaults[@]}" "$@" \
    </dev/null >>"$server_log" 2>&1 {_nap_fd}>&- &
  server_pid=$!
  echo "$server_pid" >"$dir/server.pid"
  _await_ready
}

# expect_nbdsnapd_refused MESSAGE ARGS...: nbdsnapd with ARGS (after $sock, $ctl and $state) must stop at once
# with exit status 2, printing exactly the line "nbdsnapd: MESSAGE" (an option error), and never listen.
expect_nbdsnapd_refused() {
  local message=$1 status=0
  shift
  timeout 20 "${NBDSNAPD:?NBDSNAPD must name nbdsnapd}" --listen "unix:$sock" --control "$ctl" --state-dir "$state" \
    "$@" >"$dir/refused.out" 2>&1 || status=$?
  [[ $status == 2 ]] || fail "nbdsnapd $* exited with $status, not 2: $(cat "$dir/refused.out")"
  [[ $(cat "$dir/refused.out") == "nbdsnapd: $message" ]] ||
    fail "nbdsnapd $*: expected 'nbdsnapd: $message', got: $(cat "$dir/refused.out")"
  [[ ! -e $sock ]] || fail "nbdsnapd $* listened although refused"
}

# start_filter [--log NAME] ARGS...: nbdkit -f with the nbdsnap filter ($FILTER) outermost, then ARGS (more
# filters, the plugin and parameters). NBDSNAP_NBDKIT_PRELOAD: the sanitizer runtime an instrumented filter
# needs, preloaded into nbdkit only (clients such as qemu-io misbehave with it). -v unless NBDKIT_VERBOSE= .
start_filter() {
  server_log=$(_log_name nbdkit "$@")
  [[ ${1:-} != --log ]] || shift 2
  case "${FILTER:?FILTER must name nbdkit-nbdsnap-filter.so}" in */*) ;; *) FILTER=./$FILTER ;; esac
  rm -f "$sock" "$ctl"
  setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit -f ${NBDKIT_VERBOSE--v} -U "$sock" \
    --filter="$FILTER" "$@" nbdsnap-control="$ctl" </dev/null >>"$server_log" 2>&1 {_nap_fd}>&- &
  server_pid=$!
  echo "$server_pid" >"$dir/server.pid"
  _await_ready
}

# use_front_end nbdsnapd|filter BINARY: the test runs against this front end (start_server).
use_front_end() {
  FRONT_END=$1
  case $1 in
    nbdsnapd) NBDSNAPD=$(realpath "${2:?use_front_end: the nbdsnapd binary}") ;;
    filter) FILTER=$(realpath "${2:?use_front_end: the filter .so}") ;;
    *) fail "front end must be nbdsnapd or filter, not '$1'" ;;
  esac
}
start_server() { if [[ $FRONT_END == nbdsnapd ]]; then start_nbdsnapd "$@"; else start_filter "$@"; fi; }
server_alive() { [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; }

# await_server_exit START_NS: waits (at most STOP_TIMEOUT, 30 s, then SIGKILL and a failure) for the server to
# exit; sets $server_status and $stop_ms, the milliseconds from START_NS (date +%s%N) to its exit.
await_server_exit() {
  local start=$1 limit_ns=$((${STOP_TIMEOUT:-30} * 1000000000)) now_ns
  _now_ns
  while kill -0 "$server_pid" 2>/dev/null && ((now_ns - start < limit_ns)); do
    _nap 0.01
    _now_ns
  done
  stop_ms=$(((now_ns - start) / 1000000))
  server_status=0
  if kill -0 "$server_pid" 2>/dev/null; then
    show_stacks "$server_pid"
    kill -KILL "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    fail "the server still ran ${STOP_TIMEOUT:-30} s after the stop signal (killed)"
  fi
  wait "$server_pid" 2>/dev/null || server_status=$?
  server_pid=
  rm -f "$dir/server.pid"
}

# await_log PATTERN SECONDS [FILE]: waits until FILE ($server_log) has a line matching PATTERN (grep -E); 1 if it
# has none after SECONDS.
await_log() {
  local i file=${3:-$server_log}
  for ((i = 0; i < $2 * 10; i++)); do
    grep -E "$1" "$file" >/dev/null 2>&1 && return 0
    _nap 0.1
  done
  grep -E "$1" "$file" >/dev/null 2>&1
}

# expect_refused_write URI LOG PATTERN PID: a qemu-io write through URI fails within 30 s, and LOG (the log of
# the server PID) then has a line matching PATTERN (grep, basic). A write that is served, or no answer at all
# (PID's threads are shown then), fails the test.
expect_refused_write() {
  local status=0
  timeout 30 qemu-io -f raw -c 'write -P 0x99 0 4k' "$1" >"$dir/write.out" 2>&1 || status=$?
  ((status != 0)) || fail "a write through $1 succeeded; expected it refused ($3)"
  if ((status == 124)); then
    show_stacks "$4"
    fail "qemu-io got no answer through $1 within 30 s (where the server waits: above)"
  fi
  grep -q "$3" "$2" || fail "$2 does not say '$3'; the client said: $(cat "$dir/write.out")"
}

# show_stacks PID: where each thread of PID waits, on stderr: its state and kernel wait channel, and gdb's
# backtraces (bounded: -k, as gdb ignores TERM while a thread is in state D).
show_stacks() {
  local task
  for task in /proc/"$1"/task/*; do
    echo "  thread ${task##*/}: $(awk '/^State:/ {print $2, $3}' "$task/status" 2>/dev/null) in $(cat "$task/wchan" 2>/dev/null)" >&2
  done
  if command -v gdb >/dev/null; then
    timeout -k 1 60 gdb -p "$1" -batch -ex 'thread apply all bt 15' 2>/dev/null | grep -E '^#|^Thread' >&2 || true
  fi
}

# stop_server [SIGNAL]: sends SIGNAL (TERM) to the server and waits for it (SIGKILL: no grace needed).
stop_server() {
  local signal=${1:-TERM} start
  [[ -n $server_pid ]] || fail "stop_server: no server is running"
  start=$(date +%s%N)
  kill -"$signal" "$server_pid" 2>/dev/null || true
  await_server_exit "$start"
}
stop_server_timed() { stop_server TERM; }

# ctl JSON...: requests on one control connection, a reply line each; fails unless every reply is ok.
ctl() { "$PY" -m nbdsnap "$ctl" "$@"; }
# ctl_error JSON: a request that must fail; prints the reply.
ctl_error() { "$PY" -m nbdsnap --expect-error "$ctl" "$1"; }
jf() { "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
# ctl_waiting NAME JSON...: control requests expected to wait (for a frozen or stalled file system), sent in the
# background for at most 120 s; their output goes to $dir/NAME.out. still_waiting NAME WHY: fails unless they
# still wait (WHY: what they wait for). ctl_waited NAME: waits for them; fails unless they answered ok.
declare -A _waiting=()
ctl_waiting() {
  local name=$1
  shift
  timeout 120 "$PY" -m nbdsnap "$ctl" "$@" >"$dir/$name.out" 2>&1 &
  _waiting[$name]=$!
  track_pid $!
}
still_waiting() {
  kill -0 "${_waiting[$1]}" 2>/dev/null || fail "the $1 request answered while $2: $(cat "$dir/$1.out")"
}
ctl_waited() { wait "${_waiting[$1]}" || fail "the $1 request failed: $(cat "$dir/$1.out")"; }

# file_holds FILE OFFSET LENGTH BYTE: FILE holds LENGTH bytes of value BYTE (0-255) at OFFSET (sizes as qemu-io
# takes them: 4K, 1M). Reads the file itself, which qemu-io refuses while nbdsnap locks it (an origin).
file_holds() {
  "$PY" - "$@" <<'PYEOF'
import sys
units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
size = lambda t: int(t.rstrip("KMG")) * units[t[len(t.rstrip("KMG")):]]
path, offset, length, byte = sys.argv[1], size(sys.argv[2]), size(sys.argv[3]), int(sys.argv[4], 0)
with open(path, "rb") as f:
    f.seek(offset)
    sys.exit(0 if f.read(length) == bytes([byte]) * length else 1)
PYEOF
}
uri() { echo "nbd+unix:///$1?socket=$sock"; }
image_uri() { uri "$1@$2"; }

# snapshot NAME ORIGIN: creates and takes a snapshot with a 64 MiB difference storage file.
snapshot() {
  local storage="[{\"path\":\"$dir/$1.diff\",\"size\":67108864}]"
  ctl "{\"command\":\"snapshot-create\",\"name\":\"$1\",\"origins\":[\"$2\"],\"storage\":$storage}" \
    "{\"command\":\"snapshot-take\",\"name\":\"$1\"}" >/dev/null
}

# cbt_state_is_clean ORIGIN: the origin's CBT state file (its JSON header line) says it was saved at a clean
# stop, and the log says so too.
cbt_state_is_clean() { grep -q 'stopped cleanly' "$server_log" && cbt_file_is_clean "$1"; }
# cbt_file_is_clean ORIGIN: $state/ORIGIN.cbt is marked as saved by a clean stop (either front end).
cbt_file_is_clean() {
  head -n 1 "$state/$1.cbt" | "$PY" -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["clean"] else 1)'
}

# run_cli EXPECTED-STATUS ARGS...: runs nbdsnap ($NBDSNAP), leaves stdout in $out and stderr in $err.
run_cli() { run_cli_within 0 "$@"; }

# run_cli_within SECONDS EXPECTED-STATUS ARGS...: run_cli, but nbdsnap is killed after SECONDS (0: no limit; a
# hang fails the test instead of holding it up); leaves the run's duration in $elapsed_ms.
run_cli_within() {
  local limit=$1 want=$2 status=0 start
  shift 2
  start=$(date +%s%N)
  if ((limit > 0)); then
    timeout -k 2 "$limit" "${NBDSNAP:?NBDSNAP must name nbdsnap}" "$@" >"$dir/out" 2>"$dir/err" || status=$?
  else
    "${NBDSNAP:?NBDSNAP must name nbdsnap}" "$@" >"$dir/out" 2>"$dir/err" || status=$?
  fi
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  out=$(cat "$dir/out")
  err=$(cat "$dir/err")
  if ((status != want)); then
    echo "stdout: $out" >&2
    echo "stderr: $err" >&2
    ((limit > 0 && status == 124)) && fail "nbdsnap $* still ran after $limit s (killed)"
    fail "nbdsnap $* exited $status, expected $want"
  fi
}

# expect_out REGEX / expect_err REGEX: the last run_cli's stdout / stderr matches (grep -E).
expect_out() { grep -Eq -- "$1" <<<"$out" || fail "stdout lacks /$1/: $out"; }
expect_err() { grep -Eq -- "$1" <<<"$err" || fail "stderr lacks /$1/: $err"; }
# jq_out FILTER: applies a jq filter to the last run_cli's stdout.
jq_out() { jq -r "$1" <<<"$out"; }
# write PATTERN OFFSET LENGTH EXPORT: writes a byte pattern through NBD.
write() { qemu-io -f raw -c "write -P $1 $2 $3" "$(uri "$4")" >/dev/null; }

# parse_rounds DEFAULT ARGS...: sets $rounds from --rounds N (DEFAULT without it); --duration S is accepted and
# ignored (a soak run passes it to every reliability script); any other argument fails the test.
parse_rounds() {
  rounds=$1
  shift
  while (($#)); do
    case $1 in
      --rounds) rounds=$2; shift 2 ;;
      --duration) shift 2 ;;
      *) fail "unknown option $1" ;;
    esac
  done
}

# mount_tmpfs DIR SIZE: a private tmpfs, unmounted at exit; skips the test when mounting is impossible.
mount_tmpfs() {
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2" tmpfs "$1" 2>/dev/null || skip "cannot mount a tmpfs (not root or no permission)"
  _mounts+=("$1")
}
# freezable_fs SIZE: mounts a new ext4 file system of SIZE bytes (truncate's units: 64M) on $fs (in $dir),
# for freeze_fs and thaw_fs: a frozen file system stops answering writes as a hung NFS server does. At exit it
# is thawed, the server stopped (its files may be there) and unmounted. Skips (77) without root, mkfs.ext4,
# fsfreeze or a loop mount.
freezable_fs() {
  requires_root
  requires mkfs.ext4 -V
  requires fsfreeze --version
  fs=$dir/fs
  mkdir "$fs"
  truncate -s "$1" "$dir/fs.img"
  mkfs.ext4 -q -F "$dir/fs.img" || skip "mkfs.ext4 failed"
  timeout 30 mount -o loop "$dir/fs.img" "$fs" 2>/dev/null || skip "cannot loop-mount an ext4 image"
  cleanup_fn _thaw_and_unmount_fs
}
_thaw_and_unmount_fs() {
  timeout 30 fsfreeze -u "$fs" 2>/dev/null || true  # frozen or not: the test may have frozen it itself
  [[ -z $server_pid ]] || stop_server TERM
  timeout 30 umount "$fs" || timeout 30 umount -l "$fs"
}
# freeze_fs: writes back what is cached on $fs, then freezes it (skips when it cannot). thaw_fs: thaws it.
# `sync -f` writes back $fs alone: a plain sync waits for every file system's dirty pages, many seconds on a CI
# machine that builds packages meanwhile.
freeze_fs() {
  timeout 60 sync -f "$fs" || true
  timeout 30 fsfreeze -f "$fs" || skip "fsfreeze -f failed"
}
thaw_fs() { timeout 30 fsfreeze -u "$fs" || fail "fsfreeze -u"; }
# stallable_fs: mounts stall_fs.py (FUSE) on $sfs (in $dir), passing through to $dir/sfs-back; after stall_fs
# every call on it waits, as on a hung NFS server, until unstall_fs; even lookups and stat, which a frozen
# file system still answers. The kernel keeps what was looked up, so stall names nothing has looked up yet.
# At exit it is unstalled, the server stopped (it may wait on it) and unmounted. Skips (77) without root,
# /dev/fuse or python3-fusepy.
stallable_fs() {
  requires_root
  [[ -c /dev/fuse ]] || skip "no /dev/fuse"
  requires "$PY" -c 'import fusepy'
  sfs=$dir/sfs
  mkdir "$sfs" "$dir/sfs-back"
  "$PY" "$top/stall_fs.py" "$dir/sfs-back" "$dir/sfs-stalled" "$sfs" >"$dir/stall_fs.log" 2>&1 &
  track_pid $!
  cleanup_fn _unstall_and_unmount_fs
  local i
  for ((i = 0; i < 100; i++)); do
    mountpoint -q "$sfs" && return 0
    _nap 0.1
  done
  skip "stall_fs.py did not mount $sfs: $(cat "$dir/stall_fs.log")"
}
_unstall_and_unmount_fs() {
  rm -f "$dir/sfs-stalled"
  [[ -z $server_pid ]] || stop_server TERM
  if mountpoint -q "$sfs"; then timeout 30 umount "$sfs" || timeout 30 umount -l "$sfs"; fi
}
stall_fs() { touch "$dir/sfs-stalled"; }
unstall_fs() { rm -f "$dir/sfs-stalled"; }
vmrss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }  # KiB
