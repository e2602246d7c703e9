#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-backup-reused-name.sh — a script that names every night's snapshot alike ("bk"). A take replaces the
# checkpoint of its name, so on the second night "changes since bk" are those since tonight's take: none. A
# tester's nightly backups read 0 bytes, said "incremental since bk", exited 0 and missed every change of the
# day, in a raw copy and in a qcow2 chain. The backup record now holds when its checkpoint was taken, and a
# checkpoint taken again since falls back to a full backup, naming the reason; the copy equals the image.
# Usage: test-cli-backup-reused-name.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

disk=$dir/disk.img
truncate -s 8M "$disk"
start_nbdsnapd --origin "disk=$disk"
# night N: one snapshot "bk", a raw backup and a chain point since "bk" (full the first night), then destroy.
night() {
  run_cli 0 snapshot create bk --origin disk --storage "$dir/bk.diff:16M"
  run_cli 0 snapshot take bk
  qemu-img convert -f raw -O raw "$(uri disk@bk)" "$dir/image.raw"
  run_cli 0 --json backup --image "$(uri disk@bk)" --to "$dir/copy.raw" --since bk --allow-full
  raw_kind=$(jq_out .kind) raw_reason=$(jq_out .fallback_reason)
  cmp "$dir/copy.raw" "$dir/image.raw" || fail "night $1: the raw copy differs from disk@bk ($raw_kind)"
  run_cli 0 --json backup --image "$(uri disk@bk)" --format qcow2 --to "$dir/chain" --since bk --allow-full
  chain_kind=$(jq_out .kind) chain_reason=$(jq_out .fallback_reason)
  qemu-img compare -q -f qcow2 -F raw "$(jq_out .file)" "$dir/image.raw" ||
    fail "night $1: the chain's point differs from disk@bk ($chain_kind)"
  run_cli 0 snapshot destroy bk
}
write 0x11 0 1M disk
night 1
write 0x22 2M 1M disk  # the day's change, which the second night's copies must hold
night 2
for kind in "$raw_kind" "$chain_kind"; do [[ $kind == full ]] || fail "night 2: a $kind backup since a re-taken bk"; done
[[ $raw_reason == *"checkpoint 'bk' was taken again after the backup in $dir/copy.raw"* ]] ||
  fail "night 2, raw: reason '$raw_reason'"
[[ $chain_reason == *"checkpoint 'bk' was taken again after the backup in $dir/chain"* ]] ||
  fail "night 2, chain: reason '$chain_reason'"
pass "a snapshot name reused every night gives full copies equal to the image, saying why"

# The same take again is no new checkpoint: an incremental backup of it reads nothing and is right.
run_cli 0 snapshot create bk --origin disk --storage "$dir/bk.diff:16M"
run_cli 0 snapshot take bk
write 0x33 4M 1M disk
run_cli 0 --json backup --image "$(uri disk@bk)" --to "$dir/copy.raw" --since bk --allow-full
[[ $(jq_out .kind) == full ]] || fail "night 3: $(jq_out .kind)"
run_cli 0 --json backup --image "$(uri disk@bk)" --to "$dir/copy.raw" --since bk
[[ $(jq_out .kind) == incremental && $(jq_out .bytes_read) == 0 ]] || fail "the same take again: $out"
qemu-img compare -q -f raw -F raw "$dir/copy.raw" "$(uri disk@bk)" || fail "night 3: the copy differs from disk@bk"
pass "a second backup of the same take is an empty incremental one"
