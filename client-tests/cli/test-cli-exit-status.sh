#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-exit-status.sh — nbdsnap's documented exit statuses (docs/nbdsnap.md, EXIT STATUS), one case each,
# run twice: in text (on stderr, nothing on stdout) and with --json (an error object on stdout with
# code, errno and message, nothing on stderr), connection errors included (a socket that does not exist, a
# socket of the other protocol, a server that never answers), and a local file's with its errno. Then every
# numeric option of the CLI refused with its name, value and bounds (issue 20, item 3).
# Usage: test-cli-exit-status.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

truncate -s 16M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img"
run_cli 0 snapshot create s --origin disk --storage "$dir/s.diff:16M"
run_cli 0 snapshot take s

# A Unix socket that accepts connections and never answers (bounded by --timeout 1, and killed with the test).
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
time.sleep(120)' "$dir/silent.sock" &
track_pid $!
for _ in $(seq 100); do [[ -S $dir/silent.sock ]] && break; sleep 0.1; done

# STATUS CODE(--json) ARGS...: the documented cases.
cases=(
  "1|already_exists|snapshot create s --origin disk --storage $dir/s2.diff:16M"
  "2|usage|snapshot frobnicate"
  "2|usage|cbt map disk --page-size 0"
  "2|wrong_socket|--control $sock origins"
  "3|not_found|origin info nosuch"
  "3|not_found|snapshot destroy nosuch"
  "3|not_found|backup --image nbd+unix:///nosuch?socket=$sock --to $dir/b1.img"
  "4|connection_failed|--control $dir/missing.sock origins"
  "4|connection_failed|backup --image nbd+unix:///disk?socket=$dir/missing.sock --to $dir/b2.img"
  "4|timeout|--timeout 1 --control $dir/silent.sock origins"
  "4|timeout|--timeout 1 backup --image nbd+unix:///disk?socket=$dir/silent.sock --to $dir/b3.img"
  "4|io_error|backup --image nbd+unix:///disk@s?socket=$sock --to $dir/missing-directory/b4.img"
)
for case in "${cases[@]}"; do
  IFS='|' read -r status code command <<<"$case"
  # shellcheck disable=SC2086 # the command's words
  run_cli_within 20 "$status" $command
  [[ -z $out && $err == "nbdsnap: "* ]] ||
    fail "nbdsnap $command: expected the error on stderr only; stdout: $out; stderr: $err"
  # shellcheck disable=SC2086
  run_cli_within 20 "$status" --json $command
  [[ -z $err ]] || fail "nbdsnap --json $command printed on stderr: $err"
  [[ $(jq_out .error.code) == "$code" ]] || fail "nbdsnap --json $command: code is not $code: $out"
  [[ $(jq_out '.error.errno | type') == number && -n $(jq_out .error.message) ]] ||
    fail "nbdsnap --json $command: no errno or message: $out"
  # A local system call's failure carries its errno (ENOENT here), not 0.
  [[ $code != io_error || $(jq_out .error.errno) -gt 0 ]] || fail "nbdsnap --json $command: errno 0: $out"
  pass "exit $status, code $code: $command"
done
[[ ! -e $dir/b1.img && ! -e $dir/b2.img && ! -e $dir/b3.img ]] || fail "a failed backup left a file"

# Every numeric option: the option, the value and the bounds, in the words of nbdsnapd and the filter.
options=(
  "cbt map disk --page-size 0|--page-size 0 is out of range: it must be 1..16384"
  "cbt map disk --raw --page-size 40000|--page-size 40000 is out of range: it must be 1..32768"
  "cbt map disk --page-size -1|--page-size -1: expected a whole number 1..16384"
  "backup prune $dir --keep 0|--keep 0 is out of range: it must be 1..1000000"
  "backup --image x --to y --connections 17|--connections 17 is out of range: it must be 1..16"
  "backup --image x --to y --requests 0|--requests 0 is out of range: it must be 1..64"
  "backup --image x --to y --request-size 64M|--request-size 64M is out of range: it must be 4K..32M"
  "restore $dir --to y --connections 0|--connections 0 is out of range: it must be 1..16"
  "events --after -1|--after -1: expected a whole number 0..18446744073709551615"
  "events --wait -1|--wait -1 is out of range: it must be 0..86400"
  "events --wait 86401|--wait 86401 is out of range: it must be 0..86400"
  "--timeout 0 origins|--timeout '0': give seconds, more than 0 and at most 86400 (e.g. 30 or 2.5)"
)
for case in "${options[@]}"; do
  IFS='|' read -r command message <<<"$case"
  # shellcheck disable=SC2086
  run_cli_within 20 2 $command
  [[ $err == "nbdsnap: $message" ]] || fail "nbdsnap $command: expected 'nbdsnap: $message', got: $err"
  pass "$message"
done
