#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-backup.sh — `nbdsnap backup` against nbdsnapd: a full backup and several incremental rounds with
# writes between them, each equal to a copy of the origin made at take time; holes are skipped; incremental
# backups read only what changed (qemu:dirty-bitmap); --verify; a CBT generation change (cbt reset) makes the
# next incremental backup a full one with a clear message; a checkpoint name the server never knew fails unless
# --allow-full; an interrupted backup is not a base; backup files are private (0600) whatever the umask.
# Usage: test-cli-backup.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

disk=$dir/disk.img
backup=$dir/backup.img
truncate -s 64M "$disk"
start_nbdsnapd --origin "disk=$disk"

# take NAME: snapshot of disk with the origin quiet, plus a reference copy of the origin at that instant.
take() {
  run_cli 0 snapshot create "$1" --origin disk --storage "$dir/$1.diff:64M"
  cp --sparse=always "$disk" "$dir/ref-$1.img"
  run_cli 0 snapshot take "$1"
}
same_as_reference() {  # NAME
  cmp "$backup" "$dir/ref-$1.img" || fail "backup differs from the take-time copy of $1"
}

write 0x11 0 4M disk
write 0x12 40M 2M disk
take s1
write 0x13 1M 3M disk   # after the take: must not reach the backup
umask 000  # backups hold disk contents: private whatever the umask
run_cli 0 --json backup --image "$(uri disk@s1)" --to "$backup" --verify
umask 022
[[ $(jq_out .kind) == full && $(jq_out .checkpoint) == s1 ]] || fail "full backup: $out"
bytes=$(jq_out .bytes_read)
((bytes >= 6 << 20 && bytes < 16 << 20)) || fail "full backup read $bytes bytes; holes not skipped?"
same_as_reference s1
allocated=$(($(stat -c %b "$backup") * 512))
((allocated < 32 << 20)) || fail "backup file is not sparse ($allocated bytes allocated)"
[[ $(jq -r .state "$backup.nbdsnap-backup") == complete ]] || fail "sidecar: $(cat "$backup.nbdsnap-backup")"
[[ $(stat -c %a "$backup") == 600 && $(stat -c %a "$backup.nbdsnap-backup") == 600 ]] ||
  fail "backup files are not private: $(stat -c '%a %n' "$backup" "$backup.nbdsnap-backup")"
pass "full backup equals the take-time copy, skips holes, is sparse, verified, mode 0600 ($bytes bytes read)"

run_cli 0 snapshot destroy s1
previous=s1
patterns=(0x21 0x32 0x43)
for round in 2 3 4; do
  p=${patterns[round - 2]}
  write "$p" $((round * 5))M 1M disk
  write "$p" 63M 64K disk
  take "s$round"
  write 0x7f 0 8M disk  # after the take: must not reach the backup
  run_cli 0 --json backup --image "$(uri "disk@s$round")" --to "$backup" --since "$previous" --verify
  [[ $(jq_out .kind) == incremental ]] || fail "round $round not incremental: $out / $err"
  [[ $(jq_out .ranges_source) == "qemu:dirty-bitmap:$previous" ]] || fail "round $round ranges: $out"
  bytes=$(jq_out .bytes_read)
  # Changed since $previous: this round's 1M + 64K, and the 8M written after the previous take.
  ((bytes >= (1 << 20) + 65536 && bytes <= (10 << 20))) || fail "round $round read $bytes bytes"
  same_as_reference "s$round"
  run_cli 0 snapshot destroy "s$round"
  pass "incremental round $round equals the take-time copy ($bytes bytes read)"
  previous=s$round
done

# Table output of a backup ends with the bytes read.
take s5
run_cli 0 backup --image "$(uri disk@s5)" --to "$backup" --since s4
expect_out '^backup: +incremental since s4$'
expect_out '^bytes read: +[0-9]+ \('
same_as_reference s5
run_cli 0 snapshot destroy s5
pass "backup prints a summary ending with the bytes read"

# On a terminal (script(1) gives it a pty) the backup draws a progress bar with bytes, rate and ETA.
take s5b
script -qec "$NBDSNAP backup --image '$(uri disk@s5b)' --to '$dir/tty.img'" /dev/null >"$dir/tty.out" 2>&1 ||
  fail "backup on a terminal failed: $(cat "$dir/tty.out")"
grep -Eq 'full backup \[#+\] +100%  .* / .*/s  ETA ' "$dir/tty.out" || fail "no progress bar: $(cat "$dir/tty.out")"
cmp "$dir/tty.img" "$dir/ref-s5b.img" || fail "backup on a terminal differs"
run_cli 0 snapshot destroy s5b
pass "progress bar on a terminal"

# A name the server never knew (a typo) is refused unless --allow-full lets the backup become full, saying why:
# a typo must not turn into a silent full backup. A checkpoint it knew and lost with a new CBT generation
# (checkpoint_gone) makes the backup full with the reason, as a deleted one does (below).
run_cli 0 cbt reset disk
write 0x55 20M 64K disk
take s6
run_cli 3 --json backup --image "$(uri disk@s6)" --to "$backup" --since s5-typo
expect_out "checkpoint 's5-typo' is not known to the server for origin disk .*give --allow-full"  # --json: the error object on stdout
same_as_reference s5  # the refused backup did not touch the file
run_cli 0 --json backup --image "$(uri disk@s6)" --to "$backup" --since s5
[[ $(jq_out .kind) == full ]] || fail "incremental after cbt reset: $out"
expect_err 'CBT generation of disk changed .*doing a full backup'
same_as_reference s6
run_cli 0 --json backup --image "$(uri disk@s6)" --to "$backup" --since s5-typo --allow-full
[[ $(jq_out .kind) == full ]] || fail "incremental since a typo with --allow-full: $out"
same_as_reference s6
run_cli 0 snapshot destroy s6
pass "a checkpoint never known fails (exit 3) unless --allow-full; one lost with the CBT generation makes a full backup"

# An interrupted backup leaves an incomplete record: the next incremental must be full.
take s7
jq '.state = "incomplete"' "$backup.nbdsnap-backup" >"$dir/sidecar" && mv "$dir/sidecar" "$backup.nbdsnap-backup"
run_cli 0 --json backup --image "$(uri disk@s7)" --to "$backup" --since s6
[[ $(jq_out .kind) == full ]] || fail "incremental on an incomplete base: $out"
expect_err 'did not complete'
same_as_reference s7
# And an incremental since a checkpoint the file does not hold is refused as a base too.
run_cli 0 --json backup --image "$(uri disk@s7)" --to "$backup" --since s5 --allow-full
[[ $(jq_out .kind) == full ]] || fail "incremental on the wrong checkpoint: $out"
expect_err "holds checkpoint 's7', not 's5'"
run_cli 0 snapshot destroy s7
pass "incomplete or mismatched bases fall back to a full backup"

# The backup compares with the image's own CBT, frozen at its take: a reset of the live CBT after the take
# changes nothing for this image (before, the live generation made it full and recorded no checkpoint).
write 0x66 30M 64K disk
take s8
run_cli 0 cbt reset disk
run_cli 0 --json backup --image "$(uri disk@s8)" --to "$backup" --since s7
[[ $(jq_out .kind) == incremental && $(jq_out .checkpoint) == s8 ]] || fail "image after a live reset: $out / $err"
same_as_reference s8
run_cli 0 snapshot destroy s8
pass "a reset of the live CBT after the take leaves the image's backup incremental"

# A checkpoint the image's CBT no longer has: a full backup, saying it is gone.
take s9
run_cli 0 --json backup --image "$(uri disk@s9)" --to "$backup"
run_cli 0 snapshot destroy s9
run_cli 0 checkpoint delete disk s9
take s10
run_cli 0 --json backup --image "$(uri disk@s10)" --to "$backup" --since s9
[[ $(jq_out .kind) == full ]] || fail "incremental since a deleted checkpoint: $out"
expect_err "checkpoint 's9' is gone: it was deleted; do a full backup \(checkpoint_gone\): doing a full backup"
same_as_reference s10
run_cli 0 snapshot destroy s10
pass "a deleted checkpoint makes the next backup full, with the checkpoint_gone reason"
