#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-block-device-cbt-restart.sh — a block device written while nothing tracked it starts a new CBT
# generation at the next start, through nbdsnapd and through the filter over the file plugin; an untouched
# one resumes its generation and checkpoints. Before, a block device had no content fingerprint: CBT resumed
# over a dd (or a mkfs, a mount) made while the server was stopped, and the next incremental backup missed
# those blocks with no error. A loop device bound to another file while stopped renews too. Needs root and a loop device; skipped (77) otherwise.
# Usage: test-block-device-cbt-restart.sh FILTER.so NBDSNAPD
FILTER=${1:?usage: $0 FILTER.so NBDSNAPD}
NBDSNAPD=$(realpath "${2:?usage: $0 FILTER.so NBDSNAPD}")
source "$(dirname "$0")/../functions.sh"

requires_root
requires losetup --version
truncate -s 8M "$dir/disk.raw"
loop=$(losetup --find --show "$dir/disk.raw" 2>/dev/null) || skip "no loop device here"
release_loop_device() {  # the server first (a loop device in use is not detached at once)
  local i
  if [[ -n $server_pid ]]; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  for ((i = 0; i < 50; i++)); do losetup -d "$loop" 2>/dev/null && break; sleep 0.1; done
}
cleanup_fn release_loop_device

cbt() { ctl "{\"command\":\"cbt-info\",\"origin\":\"$1\"}"; }
generation() { jq -r .cbt.generation <<<"$(cbt "$1")"; }
checkpoints() { jq -r '.cbt.checkpoints | keys | join(" ")' <<<"$(cbt "$1")"; }
renewal_reason() {
  jq -r '[.events[] | select(.type == "generation_renewed")] | .[0].reason // ""' \
    <<<"$(ctl '{"command":"events-wait","after":0}')"
}
take_checkpoint() {  # ORIGIN NAME: a snapshot taken and destroyed, its checkpoint kept
  ctl "{\"command\":\"snapshot-create\",\"name\":\"$2\",\"origins\":[\"$1\"],\"storage\":[{\"path\":\"$dir/$2.diff\",\"size\":8388608}]}" \
    >/dev/null
  ctl "{\"command\":\"snapshot-take\",\"name\":\"$2\"}" >/dev/null
  ctl "{\"command\":\"snapshot-destroy\",\"name\":\"$2\"}" >/dev/null
}

# check_front_end NAME EXPORT ORIGIN START...: START (a command with its arguments) starts the server; writes through
# NBD, a checkpoint, clean stops; nothing else writes: the generation and checkpoint stay; a dd to the loop
# device while stopped: a new generation, and the event says the kernel counted writes.
check_front_end() {
  local name=$1 export=$2 origin=$3
  shift 3
  "$@"
  [[ -b $loop ]] || fail "$loop is gone"
  qemu-io -f raw -c "write -P 0x11 0 1M" "$(uri "$export")" >/dev/null || fail "$name: write through NBD"
  take_checkpoint "$origin" c1
  qemu-io -f raw -c "write -P 0x22 2M 64K" "$(uri "$export")" >/dev/null || fail "$name: write after the take"
  local gen
  gen=$(generation "$origin")
  stop_server
  ((server_status == 0)) || fail "$name did not stop cleanly"

  "$@"
  qemu-io -f raw -r -c "read -P 0 0 4K" "$(uri "$export")" >/dev/null 2>&1 && true  # the filter attaches at open
  [[ $(generation "$origin") == "$gen" ]] ||
    fail "$name: an untouched block device did not resume its generation: $(renewal_reason)"
  [[ $(checkpoints "$origin") == c1 ]] || fail "$name: checkpoint c1 lost across a clean restart"
  pass "$name: a block device nobody wrote while stopped resumes its CBT generation and checkpoints"
  stop_server

  dd if=/dev/urandom of="$loop" bs=4096 seek=1000 count=1 conv=notrunc,fsync status=none
  "$@"
  qemu-io -f raw -r -c "read -P 0 0 4K" "$(uri "$export")" >/dev/null 2>&1 && true
  [[ $(generation "$origin") != "$gen" ]] ||
    fail "$name: a block device written while stopped kept its generation (CBT misses that write)"
  local reason
  reason=$(renewal_reason)
  grep -q "changed while nothing tracked it (the kernel counted writes to its block device" <<<"$reason" ||
    fail "$name: the generation_renewed event does not say why: '$reason'"
  pass "$name: a block device written while stopped gets a new CBT generation ($reason)"
  stop_server
}

mkdir -p "$dir/state-nbdsnapd" "$dir/state-filter"
check_front_end nbdsnapd d d start_nbdsnapd --state-dir "$dir/state-nbdsnapd" --origin "d=$loop"

# The same loop device bound to another file while stopped (nothing written through it): the kernel keeps
# its counts, so the fingerprint also names the backing file (a hostile tester saw CBT resume over it).
start_nbdsnapd --state-dir "$dir/state-nbdsnapd" --origin "d=$loop"
gen=$(generation d)
stop_server
truncate -s 8M "$dir/other.raw"
losetup -d "$loop" && losetup "$loop" "$dir/other.raw" || skip "cannot bind $loop again"
start_nbdsnapd --state-dir "$dir/state-nbdsnapd" --origin "d=$loop"
[[ $(generation d) != "$gen" ]] || fail "a loop device bound to another file while stopped kept its CBT generation"
pass "nbdsnapd: a loop device bound to another file while stopped gets a new CBT generation"
stop_server
check_front_end "the filter over file=$loop" "" default \
  start_filter file "$loop" nbdsnap-state-dir="$dir/state-filter"
echo PASS
