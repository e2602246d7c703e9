#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-detach-stalled.sh — a forced origin-detach waits for the origin's write in flight, which a stalled disk
# holds up (nbdkit's delay filter below the nbdsnap filter: 8 s per write). Meanwhile a client of another
# origin connects and reads at once, and a new client of the origin being detached is refused with busy. The
# filter held its own lock across the engine's detach, so every new connection waited for the stalled disk.
# Usage: test-detach-stalled.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

mkdir "$dir/disks" "$dir/state"
truncate -s 4M "$dir/disks/a.img" "$dir/disks/b.img"
start_filter --log stalled --filter=delay file dir="$dir/disks" delay-write=8 nbdsnap-state-dir="$dir/state"
for export in a.img b.img; do  # both attached (reads are not delayed)
  timeout 30 qemu-io -f raw -r -c 'read 0 4k' "$(uri $export)" >/dev/null || fail "read $export"
done
timeout 60 qemu-io -f raw -c 'write -P 0x44 0 4k' "$(uri a.img)" >"$dir/write.out" 2>&1 &
writer=$!
track_pid "$writer"
sleep 1  # the write is inside the filter, waiting in the delay filter
"$PY" -m nbdsnap "$ctl" '{"command":"origin-detach","name":"a.img","force":true}' >"$dir/detach.out" 2>&1 &
detach=$!
track_pid "$detach"
sleep 1  # the detach waits for the write
kill -0 "$detach" 2>/dev/null || fail "the detach did not wait for the write in flight: $(cat "$dir/detach.out")"
started=$SECONDS
timeout 5 qemu-io -f raw -r -c 'read 0 4k' "$(uri b.img)" >/dev/null ||
  fail "a client of b.img waited for a.img's stalled detach (or failed)"
if timeout 5 qemu-io -f raw -r -c 'read 0 4k' "$(uri a.img)" >"$dir/a.out" 2>&1; then
  fail "a new client of a.img, which is being detached, was served"
fi
grep -q "origin 'a.img' is being detached" "$server_log" || fail "no busy reason in the log: $(cat "$dir/a.out")"
((SECONDS - started < 5)) || fail "the clients took $((SECONDS - started)) s"
pass "while a.img's detach waits for its stalled write, b.img is served and a.img's new client is told busy"
wait "$detach" || fail "the forced detach failed: $(cat "$dir/detach.out")"
wait "$writer" || true  # its write may fail (EIO after the detach) or pass: either is tracked
timeout 30 qemu-io -f raw -r -c 'read 0 4k' "$(uri a.img)" >/dev/null || fail "a.img is not served again"
pass "after the write, the detach returns and a.img attaches again"
