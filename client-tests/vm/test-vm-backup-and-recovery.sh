#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-vm-backup-and-recovery.sh — a Linux guest formats its NBD disk (the origin) ext4 and keeps writing files,
# fsyncing each. While it writes:
#  1. take s1 with --pre-hook/--post-hook freezing and thawing the guest's filesystem, back up disk@s1 (full);
#  2. more writes; take s2 the same way, back up incrementally since s1 into a copy of the full backup;
#     both backups equal the disk at their take (copied while the guest was frozen), pass e2fsck -fn and hold
#     every file whose fsync the guest reported before the take;
#  3. take s3, writable, without hooks (a crash-consistent image): after journal replay (e2fsck on a copy) the
#     filesystem is clean and holds every file fsynced before the take;
#  4. a recovery guest boots on disk@s3: its kernel replays the journal into the writable image, it finds every
#     file with its checksum and writes new ones; the image is clean afterwards, while the first guest kept
#     writing to the origin and the origin never saw the recovery guest's files.
# Usage: test-vm-backup-and-recovery.sh nbdsnapd|filter NBDSNAP SERVER CACHE-DIR (see lib.sh)
source "$(dirname "$0")/lib.sh"

# take_frozen SNAPSHOT: creates and takes SNAPSHOT of disk with the guest's filesystem frozen around the take.
# Nothing writes the disk while the filesystem is frozen, so the pre-hook also copies the origin file then:
# $dir/ref-SNAPSHOT.img is the disk as it was at the take, byte for byte, to compare backups with.
take_frozen() {
  nbdsnap snapshot create "$1" --origin disk --storage "$dir/$1.diff:256M" >/dev/null
  vm_fsynced "$dir/g1" >"$dir/sums-$1"  # fsyncs that returned before the take began
  nbdsnap snapshot take "$1" \
    --pre-hook "$here/guest-command $dir/g1 freeze && cp --sparse=always $origin $dir/ref-$1.img" \
    --post-hook "$here/guest-command $dir/g1 thaw" >/dev/null
  vm_wait_fsynced "$dir/g1" $(($(wc -l <"$dir/sums-$1") + 3)) 120 || fail "the guest did not write after the thaw"
}

server_start
start_guest g1 "nbdsnap.format=1 nbdsnap.writer=g" disk
vm_wait_fsynced "$dir/g1" 10 120 || fail "the writer did not start"
pass "guest g1 formatted disk ext4 and writes ($vm_front_end)"

take_frozen s1
nbdsnap backup --image "$(uri disk@s1)" --to "$dir/full.img" --verify --json >"$dir/full.json"
nbdsnap snapshot destroy s1 >/dev/null
cmp "$dir/full.img" "$dir/ref-s1.img" || fail "the full backup differs from the disk at the take of s1"
check_filesystem "$dir/full.img" "full backup (s1)"
check_files "$dir/full.img" "$dir/sums-s1" "full backup (s1)"
pass "full backup of a frozen take while the guest writes"

vm_wait_fsynced "$dir/g1" $(($(wc -l <"$dir/sums-s1") + 10)) 120
take_frozen s2
cp --sparse=always "$dir/full.img" "$dir/incremental.img"
cp "$dir/full.img.nbdsnap-backup" "$dir/incremental.img.nbdsnap-backup"
nbdsnap backup --image "$(uri disk@s2)" --to "$dir/incremental.img" --since s1 --verify --json >"$dir/incremental.json"
nbdsnap snapshot destroy s2 >/dev/null
[[ $(jq -r .kind "$dir/incremental.json") == incremental ]] || fail "not incremental: $(cat "$dir/incremental.json")"
cmp "$dir/incremental.img" "$dir/ref-s2.img" || fail "the incremental backup differs from the disk at the take of s2"
check_filesystem "$dir/incremental.img" "incremental backup (s2)"
check_files "$dir/incremental.img" "$dir/sums-s2" "incremental backup (s2)"
pass "incremental backup: read $(jq .bytes_read "$dir/incremental.json") bytes (full: $(jq .bytes_read "$dir/full.json"))"

nbdsnap snapshot create s3 --origin disk --storage "$dir/s3.diff:256M" --writable >/dev/null
vm_fsynced "$dir/g1" >"$dir/sums-s3"
nbdsnap snapshot take s3 >/dev/null
copy_image disk@s3 "$dir/s3.img"
dumpe2fs -h "$dir/s3.img" 2>/dev/null | grep needs_recovery >/dev/null && replay="journal replayed" || replay="no journal to replay"
e2fsck -E journal_only -y "$dir/s3.img" >"$dir/s3.replay" 2>&1 || (($? == 1)) || fail "journal replay on the copy of disk@s3"
check_filesystem "$dir/s3.img" "take without hooks (s3), $replay"
check_files "$dir/s3.img" "$dir/sums-s3" "take without hooks (s3)"
pass "a take without hooks is crash consistent ($replay)"

before_recovery=$(vm_fsynced "$dir/g1" | wc -l)
start_guest r1 "" disk@s3  # mounting replays the journal into the writable image
vm_command "$dir/r1" list || fail "listing the files of the recovery guest"
vm_console "$dir/r1" | grep -oE 'nbdsnap-guest: file [^ ]+ [0-9a-f]{64}' | cut -d' ' -f3,4 | sort >"$dir/r1-list"
missing=$(sort "$dir/sums-s3" | comm -23 - "$dir/r1-list")
[[ -z $missing ]] || fail "the recovery guest lacks or reads other contents of: $missing"
vm_command "$dir/r1" write r 10 || fail "the recovery guest cannot write"
vm_fsynced "$dir/r1" >"$dir/sums-r1"
vm_poweroff "$dir/r1" || fail "the recovery guest did not power off"
check_no_io_errors r1
copy_image disk@s3 "$dir/s3-after.img"
check_filesystem "$dir/s3-after.img" "writable image after the recovery guest"
check_files "$dir/s3-after.img" "$dir/sums-r1" "writable image after the recovery guest (its own files)"
nbdsnap snapshot destroy s3 >/dev/null
vm_wait_fsynced "$dir/g1" $((before_recovery + 5)) 120 || fail "the first guest stopped writing during recovery"
pass "recovery guest on disk@s3: $(wc -l <"$dir/sums-s3") files found, 10 written; g1 wrote on meanwhile"

vm_command "$dir/g1" stop-writer || fail "stopping the writer"
vm_fsynced "$dir/g1" >"$dir/sums-g1"
vm_poweroff "$dir/g1" || fail "the first guest did not power off"
check_no_io_errors g1
server_stop
((server_status == 0)) || fail "$vm_front_end exited $server_status on SIGTERM"
check_filesystem "$origin" "origin"
check_files "$origin" "$dir/sums-g1" "origin (every file of g1)"
if debugfs -R "ls /w" "$origin" 2>/dev/null | grep -E '\br[0-9]{6}\b' >/dev/null; then
  fail "the recovery guest's files reached the origin"
fi
pass "origin clean with all $(wc -l <"$dir/sums-g1") files of g1 and none of the recovery guest"
