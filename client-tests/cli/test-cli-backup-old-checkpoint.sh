#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-backup-old-checkpoint.sh — the server remembers only the 64 newest dropped checkpoint names, so one
# dropped long ago is "not found" like a typo. `nbdsnap backup --since` must still make a full backup (exit 0,
# the reason on stderr) when the backup's own record names that checkpoint in the same CBT generation, and a real
# typo still fails with exit 3.
# Usage: test-cli-backup-old-checkpoint.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

disk=$dir/disk.img
backup=$dir/backup.img
truncate -s 8M "$disk"
start_nbdsnapd --origin "disk=$disk" --checkpoints-kept 2
write 0x11 0 1M disk
run_cli 0 snapshot create first --origin disk --storage "$dir/first.diff:16M"
run_cli 0 snapshot take first
run_cli 0 backup --image "$(uri disk@first)" --to "$backup"
run_cli 0 snapshot destroy first
# 70 takes with 2 checkpoints kept: 'first' falls out of the 64 remembered names. Sent in one control session
# (the CLI's create, take and destroy are tested elsewhere): 210 starts of a sanitizer-built CLI took 2 minutes.
requests=()
for ((i = 0; i < 70; i++)); do
  requests+=("{\"command\":\"snapshot-create\",\"name\":\"t$i\",\"origins\":[\"disk\"],\"storage\":[{\"path\":\"$dir/t.diff\",\"size\":16777216}]}"
             "{\"command\":\"snapshot-take\",\"name\":\"t$i\"}" "{\"command\":\"snapshot-destroy\",\"name\":\"t$i\"}")
done
ctl "${requests[@]}" >/dev/null || fail "70 takes through the control socket"
write 0x22 2M 1M disk
run_cli 0 snapshot create last --origin disk --storage "$dir/last.diff:16M"
run_cli 0 snapshot take last
cp "$disk" "$dir/reference.img"
run_cli 3 cbt map disk --since first
run_cli 3 backup --image "$(uri disk@last)" --to "$backup" --since firts
expect_err "checkpoint 'firts' is not known to the server"
run_cli 0 --json backup --image "$(uri disk@last)" --to "$backup" --since first
[[ $(jq_out .kind) == full ]] || fail "a backup since a long-dropped checkpoint: $out"
cmp "$backup" "$dir/reference.img" || fail "the full backup differs from the image"
pass "a checkpoint dropped long ago, named by the backup's record, makes a full backup; a typo still fails"
