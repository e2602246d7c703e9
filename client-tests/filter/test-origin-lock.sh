#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-origin-lock.sh — the filter locks the file behind an origin (file=, dir=) as nbdsnapd locks its origins,
# so one file is never tracked by two servers. A hostile tester served one file by nbdsnapd and by nbdkit with
# the filter: both started, and each one's writes were missing from the other's images and CBT. Now the
# second server is refused, naming the first, in either order, and so is a second nbdkit with the filter; a
# detached origin's file is free again.
# Usage: test-origin-lock.sh FILTER.so NBDSNAPD
FILTER=${1:?usage: $0 FILTER.so NBDSNAPD}
NBDSNAPD=$(realpath "${2:?usage: $0 FILTER.so NBDSNAPD}")
source "$(dirname "$0")/../functions.sh"

truncate -s 4M "$dir/disk.raw"

# other_filter NAME: a second nbdkit with the filter over disk.raw on $dir/NAME.sock; its pid in $other_pid.
other_filter() {
  setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit -f -v -U "$dir/$1.sock" \
    --filter="$(realpath "$FILTER")" file "$dir/disk.raw" nbdsnap-control="$dir/$1.ctl" \
    nbdsnap-state-dir="$dir/$1-state" </dev/null >"$dir/$1.log" 2>&1 {_nap_fd}>&- &
  other_pid=$!
  track_pid "$other_pid"
  wait_for_path "$dir/$1.sock" "$other_pid"
}

# nbdsnapd first: the filter refuses the file as an origin.
start_nbdsnapd --origin "disk=$dir/disk.raw"
other_filter k1
expect_refused_write "nbd+unix:///?socket=$dir/k1.sock" "$dir/k1.log" \
  "locked by another process (nbdsnapd" "$other_pid"
_stop_pid "$other_pid"
stop_server TERM
pass "an nbdsnapd origin's file is refused by the filter, naming nbdsnapd"

# The filter first: nbdsnapd refuses it, and so does a second nbdkit with the filter.
start_filter --log first file "$dir/disk.raw" nbdsnap-state-dir="$dir/state"
timeout 30 qemu-io -f raw -c 'write -P 0x11 0 4k' "$(uri '')" >/dev/null || fail "write through the filter"
status=0
timeout 30 "$NBDSNAPD" --listen "unix:$dir/d.sock" --control "$dir/d.ctl" --state-dir "$dir/d-state" \
  --origin "disk=$dir/disk.raw" >"$dir/nbdsnapd2.out" 2>&1 || status=$?
((status != 0)) || fail "nbdsnapd started on the filter's origin file"
grep -q "locked by another process (nbdkit" "$dir/nbdsnapd2.out" || fail "nbdsnapd said: $(cat "$dir/nbdsnapd2.out")"
other_filter k2
expect_refused_write "nbd+unix:///?socket=$dir/k2.sock" "$dir/k2.log" \
  "locked by another process (nbdkit" "$other_pid"
_stop_pid "$other_pid"
pass "the filter's origin file is refused by nbdsnapd and by a second nbdkit with the filter"

# Detached, the file is free: nbdsnapd attaches it.
ctl '{"command":"origin-detach","name":"default"}' >/dev/null || fail "detach"
setsid "$NBDSNAPD" --listen "unix:$dir/d.sock" --control "$dir/d.ctl" --state-dir "$dir/d-state" \
  --origin "disk=$dir/disk.raw" </dev/null >"$dir/nbdsnapd3.out" 2>&1 {_nap_fd}>&- &
other_pid=$!
track_pid "$other_pid"
wait_for_path "$dir/d.sock" "$other_pid"
timeout 30 qemu-io -f raw -r -c 'read -P 0x11 0 4k' "nbd+unix:///disk?socket=$dir/d.sock" >/dev/null ||
  fail "nbdsnapd does not serve the file the filter detached"
_stop_pid "$other_pid"
stop_server TERM
pass "a detached origin's file is free for nbdsnapd"
