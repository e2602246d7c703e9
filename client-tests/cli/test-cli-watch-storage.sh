#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-watch-storage.sh — `nbdsnap watch-storage` relieves low-space events during a long write: the
# snapshot gets PATH.1, PATH.2... and stays intact (image equals the take-time copy) although the write is
# far larger than its first storage; the watcher exits when the snapshot is destroyed.
# Usage: test-cli-watch-storage.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

disk=$dir/disk.img
truncate -s 64M "$disk"
qemu-io -f raw -c 'write -P 0x11 0 64M' "$disk" >/dev/null
start_nbdsnapd --origin "disk=$disk" --low-space-threshold 6M --chunk-buffer-budget 1M

run_cli 0 snapshot create s1 --origin disk --storage "$dir/s1.diff:8M"
cp "$disk" "$dir/ref.img"
run_cli 0 snapshot take s1

setsid "$NBDSNAP" watch-storage s1 --grow "$dir/more" --step 16M </dev/null >"$dir/watch.log" 2>&1 &
watcher=$!
track_pid "$watcher"

# (From the control socket: the CLI's `snapshot info` is checked below, and a sanitizer-built CLI started about
# 100 times here was most of this test's time.)
free_bytes() {
  ctl '{"command":"snapshot-info","name":"s1"}' | jq '.snapshot.storage_total - .snapshot.storage_used'
}
# The long write: 48 MiB in 1 MiB pieces, six times the first storage. Before each piece, wait (without a time
# limit that matters) until the snapshot has at least 2 MiB free: only the watcher can make that true.
for ((mib = 0; mib < 48; mib++)); do
  for ((i = 0; i < 600; i++)); do
    (($(free_bytes) >= 2 << 20)) && break
    kill -0 "$watcher" 2>/dev/null || fail "watch-storage exited: $(cat "$dir/watch.log")"
    sleep 0.1
  done
  (($(free_bytes) >= 2 << 20)) || fail "storage of s1 was not relieved: $(cat "$dir/watch.log")"
  write 0x22 ${mib}M 1M disk
done

run_cli 0 --json snapshot info s1
[[ $(jq_out .snapshot.state) == taken ]] || fail "snapshot not intact: $out"
[[ $(jq_out '.snapshot.storage | map(.path) | index("'"$dir"'/more.1")') != null ]] || fail "no more.1: $out"
((($(jq_out .snapshot.storage_total)) >= 48 << 20)) || fail "storage did not grow enough: $out"
grep -q "appended $dir/more.1 (16.0 MiB)" "$dir/watch.log" || fail "watcher log: $(cat "$dir/watch.log")"
run_cli 0 events
expect_out 'low_free_space +s1 '
expect_out 'storage_appended +s1 '
qemu-img compare -f raw -F raw "$dir/ref.img" "$(uri disk@s1)" >/dev/null || fail "image differs from take time"
pass "watch-storage appended $(grep -c appended "$dir/watch.log") files; the snapshot survived a 48 MiB write"

run_cli 0 snapshot destroy s1
for _ in $(seq 300); do kill -0 "$watcher" 2>/dev/null || break; sleep 0.1; done
kill -0 "$watcher" 2>/dev/null && fail "watch-storage still runs after the destroy"
wait "$watcher" || fail "watch-storage exited with $?: $(cat "$dir/watch.log")"
grep -q "snapshot s1 destroyed; watch-storage ends" "$dir/watch.log" || fail "watcher log: $(cat "$dir/watch.log")"
pass "watch-storage exits when its snapshot is destroyed"

run_cli 3 watch-storage nosuch --grow "$dir/x" --step 1M
run_cli 2 watch-storage s1 --grow "$dir/x"
pass "watch-storage: unknown snapshot 3, missing --step 2"
