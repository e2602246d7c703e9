#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-backup-after-crash.sh — after an unclean stop (kill -9) nbdsnapd starts a new CBT generation, and
# the nightly `nbdsnap backup --since LAST` must then make a full backup and say why (docs/nbdsnap.pod,
# backup), for a raw file and a qcow2 chain, not fail with exit 3 as if LAST were a typo (a hostile tester's
# finding: the checkpoint taken since the last clean save is unknown to the new generation). Checkpoints the
# state file knew are checkpoint_gone, naming the unclean stop. A real typo still fails.
# Usage: test-cli-backup-after-crash.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

disk=$dir/disk.img
backup=$dir/backup.img
chain=$dir/chain
truncate -s 8M "$disk"
# take_and_back_up NAME [SINCE]: takes snapshot NAME and backs it up into the raw file and the chain.
take_and_back_up() {
  run_cli 0 snapshot create "$1" --origin disk --storage "$dir/$1.diff:16M"
  run_cli 0 snapshot take "$1"
  run_cli 0 --json backup --image "$(uri "disk@$1")" --to "$backup" ${2:+--since "$2"}
  raw_kind=$(jq_out .kind)
  run_cli 0 --json backup --image "$(uri "disk@$1")" --to "$chain" --format qcow2 ${2:+--since "$2"}
  chain_kind=$(jq_out .kind)
  chain_err=$err
}

start_nbdsnapd --origin "disk=$disk"
write 0x11 0 1M disk
take_and_back_up first
run_cli 0 snapshot destroy first
stop_server TERM  # clean: the state file now holds checkpoint 'first'
start_nbdsnapd --origin "disk=$disk"
write 0x22 1M 1M disk
take_and_back_up second first
[[ $raw_kind == incremental && $chain_kind == incremental ]] || fail "since first: $raw_kind, $chain_kind"
run_cli 0 snapshot destroy second
stop_server KILL  # 'second' was never saved: the state file still says 'first', in use

start_nbdsnapd --origin "disk=$disk"
run_cli 3 --json cbt map disk --since first
[[ $(jq_out .error.code) == checkpoint_gone ]] || fail "a checkpoint of the ended generation: $out"
[[ $(jq_out .error.message) == *"ended: the last stop was not clean"* ]] || fail "no reason: $out"
pass "a checkpoint the crashed generation had saved is checkpoint_gone, naming the unclean stop"

write 0x33 2M 1M disk
cp "$disk" "$dir/reference.img"
take_and_back_up third second
[[ $raw_kind == full && $chain_kind == full ]] || fail "since second after the crash: $raw_kind, $chain_kind"
[[ $err == *"CBT generation of disk changed"* && $chain_err == *"CBT generation of disk changed"* ]] ||
  fail "the full backups do not say why: $err / $chain_err"
cmp "$backup" "$dir/reference.img" || fail "the raw full backup differs from the image"
run_cli 0 restore "$chain" --point third --to "$dir/restored.img"
cmp "$dir/restored.img" "$dir/reference.img" || fail "the chain's full point differs from the image"
pass "backup --since the checkpoint lost in the crash makes full backups (raw, qcow2) and says why"

run_cli 3 backup --image "$(uri disk@third)" --to "$backup" --since thrid
expect_err "checkpoint 'thrid' is not known to the server"
pass "a typo still fails with exit status 3"
run_cli 0 snapshot destroy third
stop_server TERM
