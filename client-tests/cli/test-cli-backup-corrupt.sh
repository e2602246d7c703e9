#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-backup-corrupt.sh — a backup of a corrupted snapshot says why (issue 20, item 5): the difference
# storage (1 MiB, 16 chunks of 64 KiB) overflows under 4 MiB of origin writes after the take, so the image's
# reads fail with EIO; `nbdsnap backup` then asks the server and prints the snapshot's state, the corruption
# reason and the origin's errno, exit status 4 (with --json: code corrupted and the origin's errno on stdout).
# Run once per front end.
# Usage: test-cli-backup-corrupt.sh NBDSNAP nbdsnapd NBDSNAPD
#        test-cli-backup-corrupt.sh NBDSNAP filter FILTER.so
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
use_front_end "$2" "$3"
front_end=$FRONT_END

disk=$dir/disk.img
truncate -s 16M "$disk"
if [[ $front_end == nbdsnapd ]]; then
  start_nbdsnapd --chunk-min-shift 16 --origin "disk=$disk"
  write_export=disk storage=(--storage "$dir/s.diff:1M")
else
  mkdir "$dir/diffs"
  start_filter file "$disk" nbdsnap-state-dir="$dir/state" nbdsnap-storage="$dir/diffs:1M" \
    nbdsnap-default-origin=disk nbdsnap-chunk-min-shift=16
  write_export='' storage=()
fi
write 0x11 0 8M "$write_export"
run_cli 0 snapshot create s --origin disk "${storage[@]}"
run_cli 0 snapshot take s
write 0x22 0 4M "$write_export"  # 64 chunks to copy into room for 16: the snapshot is corrupted
run_cli 0 --json snapshot info s
[[ $(jq_out .snapshot.state) == corrupted ]] || fail "the snapshot is not corrupted: $out"
reason=$(jq_out .snapshot.corruption_reason)
errno=$(jq_out '.snapshot.origin_errors[0].errno')

run_cli_within 60 4 backup --image "$(uri disk@s)" --to "$dir/backup.img"
expect_err "; snapshot s is corrupted: "
grep -qF "snapshot s is corrupted: $reason; origin disk: errno $errno (" <<<"$err" ||
  fail "the backup's message lacks the reason '$reason' and errno $errno: $err"
pass "backup of a corrupted snapshot: exit 4: $err"

run_cli_within 60 4 --json backup --image "$(uri disk@s)" --to "$dir/backup2.img"
[[ -z $err ]] || fail "--json backup printed on stderr: $err"
[[ $(jq_out .error.code) == corrupted && $(jq_out .error.errno) == "$errno" ]] ||
  fail "--json backup of a corrupted snapshot: $out"
jq_out .error.message | grep -F "snapshot s is corrupted: $reason" >/dev/null || fail "--json message: $out"
pass "--json backup of a corrupted snapshot: code corrupted, errno $errno"
