#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-filter.sh — nbdsnap against nbdkit with the nbdsnap filter: version and origins, a snapshot with the
# filter's default storage, and full + incremental backups. nbdkit serves base:allocation only, so the
# incremental backup takes its ranges from the control socket's cbt-map of the image's snapshot.
# Usage: test-cli-filter.sh NBDSNAP FILTER.so
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
FILTER=$2

disk=$dir/disk.img
backup=$dir/backup.img
mkdir "$dir/state" "$dir/diffs"
truncate -s 32M "$disk"
start_filter file "$disk" nbdsnap-state-dir="$dir/state" nbdsnap-storage="$dir/diffs:64M"
write 0x11 0 2M ''   # the first open attaches the origin "default"

run_cli 0 --json version
[[ $(jq_out .front_end) == nbdkit-filter ]] || fail "version: $out"
run_cli 0 origins
expect_out '^default +32\.0 MiB +no +[0-9a-f-]{36} '
pass "version and origins through the filter"

run_cli 0 snapshot create s1 --origin default
cp "$disk" "$dir/ref-s1.img"
run_cli 0 snapshot take s1
expect_out '^state: +taken$'
write 0x12 0 1M default
run_cli 0 --json backup --image "$(uri default@s1)" --to "$backup" --verify
[[ $(jq_out .kind) == full ]] || fail "full backup: $out"
cmp "$backup" "$dir/ref-s1.img" || fail "full backup differs from the take-time copy"
run_cli 0 snapshot destroy s1
pass "full backup through the filter"

write 0x13 8M 1M default
run_cli 0 snapshot create s2 --origin default
cp "$disk" "$dir/ref-s2.img"
run_cli 0 snapshot take s2
write 0x14 16M 1M default
run_cli 0 --json backup --image "$(uri default@s2)" --to "$backup" --since s1 --verify
[[ $(jq_out .kind) == incremental ]] || fail "incremental backup: $out / $err"
[[ $(jq_out .ranges_source) == "control socket cbt-map --since s1 --snapshot s2" ]] || fail "ranges: $out"
bytes=$(jq_out .bytes_read)
# Exactly the 2M changed between the takes of s1 and s2 (the frozen map of s2 has not the write at 16M).
((bytes == 2 << 20)) || fail "incremental read $bytes bytes"
cmp "$backup" "$dir/ref-s2.img" || fail "incremental backup differs from the take-time copy"
run_cli 0 snapshot destroy s2
pass "incremental backup through the filter from cbt-map ($bytes bytes read)"

run_cli 1 origin attach x "$disk"
expect_err 'not_supported'
pass "origin attach is refused by the filter (exit 1)"
