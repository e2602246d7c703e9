#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-functions.sh — the harness checks itself (no nbdsnap binary needed): a sanitizer report in a log fails a
# test that passed, `requires` skips with 77, cleanup hooks run last-registered first and see the status, the
# private directory goes, stop_server bounds its wait on a server that ignores SIGTERM, and the watchdog reaps
# orphans and ends a test at its deadline.
# Usage: test-functions.sh
set -euo pipefail
functions=$(cd "$(dirname "$0")" && pwd)/functions.sh
work=$(mktemp -d /tmp/nbdsnap-test-functions.XXXXXX)
trap 'rm -rf "$work"' EXIT

# run_case NAME EXPECTED-STATUS SCRIPT: runs SCRIPT (after sourcing functions.sh) in a fresh bash.
run_case() {
  local status=0
  printf 'source %q\n%s\n' "$functions" "$3" >"$work/$1.sh"
  timeout 60 bash "$work/$1.sh" >"$work/$1.out" 2>&1 || status=$?
  if ((status != $2)); then
    cat "$work/$1.out" >&2
    echo "FAIL: $1 exited $status, expected $2" >&2
    exit 1
  fi
  echo "ok: $1 (exit $status)"
}

run_case asan-report 1 'echo "==1==ERROR: AddressSanitizer: heap-use-after-free" >"$dir/nbdsnapd.log"'
run_case ubsan-report 1 'echo "x.cpp:3:5: runtime error: signed integer overflow" >"$dir/nbdkit.log"'
run_case tsan-report 1 'echo "WARNING: ThreadSanitizer: data race (pid=1)" >"$dir/nbdsnapd-x.log"'
run_case clean-log 0 'echo "info: all good" >"$dir/nbdsnapd.log"'
run_case requires-missing 77 'requires nbdsnap-no-such-tool --version; echo "not skipped"; exit 1'
run_case requires-present 0 'requires true'
grep -q "SKIP: .*nbdsnap-no-such-tool" "$work/requires-missing.out" || { echo "FAIL: no SKIP line" >&2; exit 1; }

run_case cleanup-order 3 'echo "$dir" >'"$work"'/dir
cleanup_fn sh -c "echo first >>'"$work"'/hooks"
cleanup_fn eval "echo \"second \$test_status\" >>'"$work"'/hooks"
exit 3'
[[ $(cat "$work/hooks") == $'second 3\nfirst' ]] || { echo "FAIL: hooks ran as: $(cat "$work/hooks")" >&2; exit 1; }
[[ ! -e $(cat "$work/dir") ]] || { echo "FAIL: the private directory was left behind" >&2; exit 1; }
echo "ok: cleanup hooks in reverse order with the status; directory removed"

# A "server" that ignores SIGTERM: stop_server gives up after STOP_TIMEOUT, kills it, and fails the test.
run_case stubborn-server 1 'STOP_TIMEOUT=1
setsid bash -c "trap \"\" TERM; echo \$\$ >'"$work"'/stubborn.pid; while :; do sleep 0.1; done" &
server_pid=$! server_log=$dir/stub.log
wait_for_path '"$work"'/stubborn.pid "$server_pid"  # its trap is set
stop_server TERM
echo "stop_server returned"'
grep -q "still ran 1 s after the stop signal" "$work/stubborn-server.out" || {
  cat "$work/stubborn-server.out" >&2
  echo "FAIL: stop_server did not report the stuck server" >&2
  exit 1
}
! kill -0 "$(cat "$work/stubborn.pid")" 2>/dev/null || { echo "FAIL: the stuck server was left running" >&2; exit 1; }
echo "ok: stop_server bounds its wait and kills a stuck server"

# The watchdog (watchdog.py): what a test leaves running is reaped, orphans included, and an orphan holding the
# test's output does not keep a reader of that output waiting (ctest waits for it).
printf 'source %q\n%s\n' "$functions" 'setsid sleep 1001 </dev/null >/dev/null 2>&1 &
(sleep 1002 &)
echo started' >"$work/orphans.sh"
SECONDS=0
# (Read as ctest reads it, to the end of the pipe; without the watchdog the orphan holds that for 30 s.)
timeout 60 bash "$work/orphans.sh" 2>&1 | timeout 30 cat >"$work/orphans.out" || true
out=$(cat "$work/orphans.out")
((SECONDS < 20)) || { echo "FAIL: an orphan held the test's output for $SECONDS s: $out" >&2; exit 1; }
[[ $out == *started* ]] || { echo "FAIL: orphans.sh did not run: $out" >&2; exit 1; }
[[ $out == *"killing what the test left running"*sleep* ]] ||
  { echo "FAIL: the watchdog did not say what it killed: $out" >&2; exit 1; }
for _ in $(seq 50); do pgrep -f "sleep 100[12]" >/dev/null || break; sleep 0.1; done
! pgrep -f "sleep 100[12]" >/dev/null || { echo "FAIL: a process of the test outlived it" >&2; exit 1; }
echo "ok: the watchdog reaps what a test left running, orphans included"

# A test past its deadline (NBDSNAP_TEST_TIMEOUT minus the watchdog's margin of at least 25 s) is told where it
# waits and ends through its own cleanup, with a failure, long before ctest's TIMEOUT.
SECONDS=0
status=0
NBDSNAP_TEST_TIMEOUT=28 run_case deadline 130 'cleanup_fn sh -c "echo cleaned >'"$work"'/deadline-cleanup"
sleep 1003' || status=$?
((SECONDS < 25)) || { echo "FAIL: the hung test ran $SECONDS s past a deadline of 3 s" >&2; exit 1; }
grep -q "the test still runs after" "$work/deadline.out" && grep -q "sleep 1003" "$work/deadline.out" &&
  grep -q "FAIL: the test ran into its deadline" "$work/deadline.out" ||
  { cat "$work/deadline.out" >&2; echo "FAIL: the watchdog did not report the hung test" >&2; exit 1; }
[[ $(cat "$work/deadline-cleanup" 2>/dev/null) == cleaned ]] ||
  { echo "FAIL: the test's cleanup did not run after the deadline" >&2; exit 1; }
echo "ok: a hung test is reported and ended at its deadline, through its cleanup"

# The watchdog passes the test every descriptor it was given, and refuses a deadline that is not seconds.
printf 'source %q\n%s\n' "$functions" 'echo kept >&3' >"$work/fd3.sh"
timeout 60 bash "$work/fd3.sh" 3>"$work/fd3.out" || { echo "FAIL: fd3.sh exited $?" >&2; exit 1; }
[[ $(cat "$work/fd3.out") == kept ]] || { echo "FAIL: descriptor 3 did not reach the test" >&2; exit 1; }
status=0
NBDSNAP_TEST_TIMEOUT=40s timeout 60 bash "$work/fd3.sh" 3>/dev/null 2>"$work/bad-timeout.out" || status=$?
((status == 2)) && grep -q "NBDSNAP_TEST_TIMEOUT='40s' is not a number of seconds" "$work/bad-timeout.out" ||
  { cat "$work/bad-timeout.out" >&2; echo "FAIL: a malformed NBDSNAP_TEST_TIMEOUT gave status $status" >&2; exit 1; }
echo "ok: the watchdog keeps the test's descriptors and names a malformed NBDSNAP_TEST_TIMEOUT"
