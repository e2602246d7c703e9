#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-operator-logs.sh — what an operator reads in nbdsnapd's log at the default level (info): a fresh origin's
# first start is news, not a warning; every snapshot create, take, storage append, corruption and destroy; origin
# attach and detach; a refused client with who it was; the snapshots a stop drops. A clean restart says nothing
# about CBT history; when stderr is the journal (JOURNAL_STREAM names it), every line carries its syslog
# priority prefix; SIGHUP reads the log level again from the configuration file.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

# expect_log PATTERN [FILE]: an extended regular expression some line of the log matches, within 5 s (the
# engine's events are logged by a thread of their own).
expect_log() {
  local file=${2:-$server_log} i
  for ((i = 0; i < 50; i++)); do
    grep -Eq -- "$1" "$file" && return 0
    sleep 0.1
  done
  fail "no log line matches '$1'"
}

truncate -s 64M "$dir/d.raw" "$dir/e.raw"
# Only d itself for local clients: its images are refused, so that a refusal is logged.
start_nbdsnapd --origin "d=$dir/d.raw" --allow 'd local' --allow 'e local'

expect_log "info: origin d: first start, no CBT state yet"
grep -q "incremental backups must start again" "$server_log" && fail "a fresh origin's first start logged as lost history"

ctl "{\"command\":\"snapshot-create\",\"name\":\"s1\",\"origins\":[\"d\"],\"storage\":[{\"path\":\"$dir/s1.diff\",\"size\":1048576}]}" >/dev/null
expect_log "info: snapshot s1 created for origins d$"
ctl '{"command":"snapshot-take","name":"s1"}' >/dev/null
expect_log "info: snapshot s1 taken$"
ctl "{\"command\":\"snapshot-append-storage\",\"name\":\"s1\",\"path\":\"$dir/s1.more\",\"size\":2097152}" >/dev/null
expect_log "info: snapshot s1: difference storage appended, 2097152 bytes \\($dir/s1.more\\)"

nbdinfo "nbd+unix:///d@s1?socket=$sock" >/dev/null 2>&1 && fail "the allow rules let a local client open d@s1"
expect_log "warning: connection [0-9]+ from uid $(id -u) pid [0-9]+: refused: local may not open export 'd@s1'"
# An export name is the client's text: a newline in it must not forge a log line, and one connection's many
# refusals (nbdinfo asks twice) make one warning.
nbdinfo "nbd+unix:///x%0A2026-11-30T00:00:00.000Z%20nbdsnapd%20error:%20FORGED?socket=$sock" >/dev/null 2>&1 &&
  fail "an export name with a newline was served"
expect_log "refused: local may not open export 'x.x0a2026-11-30T00:00:00.000Z nbdsnapd error: FORGED'"
grep -q '^2026-11-30T00:00:00.000Z nbdsnapd error: FORGED' "$server_log" && fail "a client forged a log line"
[[ $(grep -c "warning: connection [0-9]* from .*export 'd@s1'" "$server_log") == 1 ]] ||
  fail "one connection's refusals made more than one warning: $(grep "export 'd@s1'" "$server_log")"

ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null
expect_log "info: snapshot s1 destroyed$"

# A storage limit of three chunks (256 KiB, the v4 minimum) and 4 MiB written: the snapshot is corrupted.
ctl "{\"command\":\"snapshot-create\",\"name\":\"s2\",\"origins\":[\"d\"],\"limit\":786432,\"storage\":[{\"path\":\"$dir/s2.diff\",\"size\":1048576}]}" \
  '{"command":"snapshot-take","name":"s2"}' >/dev/null
qemu-io -f raw -c "write -P 0x5a 0 4M" "$(uri d)" >/dev/null
expect_log "error: snapshot s2 corrupted \\(origin d\\)"
ctl '{"command":"snapshot-destroy","name":"s2"}' >/dev/null

ctl "{\"command\":\"origin-attach\",\"name\":\"e\",\"path\":\"$dir/e.raw\"}" | grep '"ok":true' >/dev/null || fail "origin-attach e"
expect_log "info: origin e attached: $dir/e.raw"
ctl '{"command":"origin-detach","name":"e"}' | grep '"ok":true' >/dev/null || fail "origin-detach e"
expect_log "info: origin e detached$"

ctl "{\"command\":\"snapshot-create\",\"name\":\"s3\",\"origins\":[\"d\"],\"storage\":[{\"path\":\"$dir/s3.diff\",\"size\":1048576}]}" \
  '{"command":"snapshot-take","name":"s3"}' >/dev/null
stop_server
((server_status == 0)) || fail "nbdsnapd exited with $server_status"
expect_log "info: snapshot s3 \\(taken, origins d\\) dropped at shutdown"
# Every event was logged before the process ended, in the order it happened.
grep -n "snapshot s3 taken" "$server_log" >/dev/null || fail "the take of s3 was not logged before exit"

# A clean restart, with stderr on "the journal": a file whose device and inode JOURNAL_STREAM names.
mv "$server_log" "$dir/first.log"
: >"$server_log"
export JOURNAL_STREAM
JOURNAL_STREAM=$(stat -c '%d:%i' "$server_log")
echo "log-level = info" >"$dir/nbdsnapd.conf"
start_nbdsnapd --origin "d=$dir/d.raw" --config "$dir/nbdsnapd.conf"
unset JOURNAL_STREAM
expect_log "^<6>info: nbdsnapd .* ready with 1 origins$"
grep -Eq "first start|incremental backups must start again" "$server_log" && fail "a clean restart logged CBT news: $(cat "$server_log")"
grep -q "debug" "$server_log" && fail "debug lines at log level info"
# SIGHUP reads the log level again from the configuration file.
echo "log-level = debug" >"$dir/nbdsnapd.conf"
kill -HUP "$server_pid"
expect_log "^<6>info: log level debug$"
nbdinfo --size "$(uri d)" >/dev/null
expect_log "^<7>debug: connection [0-9]+: accepted$"
grep -Ev '^<[3467]>(error|warning|info|debug): ' "$server_log" && fail "lines without a journal priority prefix"
stop_server
((server_status == 0)) || fail "nbdsnapd exited with $server_status after the restart"
echo "PASS: operator logs"
