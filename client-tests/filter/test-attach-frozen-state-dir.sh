#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-attach-frozen-state-dir.sh — the first client of an export attaches it as an origin, which saves its
# CBT state; with the state directory on a frozen file system (a hung NFS server) that save waits. Meanwhile
# a client of another origin connects and is served at once, and a second client of the export being
# attached waits a bounded time (10 s) and is refused with busy, or is served when the attach ends within
# that time. The filter held its own lock across the engine's attach, so every new connection waited for the
# frozen file system.
# Usage: test-attach-frozen-state-dir.sh FILTER.so. Skips (77) without root, mkfs.ext4, fsfreeze or a loop
# mount.
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"
freezable_fs 64M
mkdir "$dir/disks"
mkdir "$fs/state"

truncate -s 4M "$dir/disks/b.img"
start_filter --log frozen-state file dir="$dir/disks" nbdsnap-state-dir="$fs/state"
timeout 30 qemu-io -f raw -c 'write -P 0x11 0 4k' "$(uri b.img)" >/dev/null || fail "write b.img"
truncate -s 4M "$dir/disks/a.img"  # listed only now: b.img's attach did not attach it

freeze_fs
timeout 120 qemu-io -f raw -c 'write -P 0x22 0 4k' "$(uri a.img)" >"$dir/first.out" 2>&1 &
first=$!
track_pid "$first"
_nap 1
kill -0 "$first" 2>/dev/null || fail "a.img's first client was served while its CBT state could not be saved"
started=$SECONDS
timeout 5 qemu-io -f raw -c 'read -P 0x11 0 4k' -c 'write -P 0x33 4k 4k' "$(uri b.img)" >/dev/null ||
  fail "a client of b.img waited for a.img's attach on the frozen state directory (or failed)"
((SECONDS - started < 5)) || fail "b.img's client took $((SECONDS - started)) s"
pass "while a.img's attach waits for its frozen state directory, b.img is served"
started=$SECONDS
if timeout 30 qemu-io -f raw -r -c 'read 0 4k' "$(uri a.img)" >"$dir/second.out" 2>&1; then
  fail "a second client of a.img, whose attach waits, was served"
fi
((SECONDS - started < 25)) || fail "the second client of a.img waited $((SECONDS - started)) s (bound: 10 s)"
grep -q "origin 'a.img' is being attached by another connection" "$server_log" ||
  fail "no busy reason in the log: $(cat "$dir/second.out")"
kill -0 "$first" 2>/dev/null || fail "a.img's first client finished while frozen: $(cat "$dir/first.out")"
pass "a second client of a.img waits at most 10 s for the attach and is told busy"

# A client that comes while the attach waits, and the thaw within its 10 s: it waits, then is served.
timeout 60 qemu-io -f raw -r -c 'read 0 4k' "$(uri a.img)" >"$dir/third.out" 2>&1 &
third=$!
track_pid "$third"
_nap 1
kill -0 "$third" 2>/dev/null || fail "a client of a.img did not wait for its attach: $(cat "$dir/third.out")"
thaw_fs
wait "$first" || fail "a.img's first client failed after the thaw: $(cat "$dir/first.out")"
wait "$third" || fail "the client of a.img waiting for its attach failed after the thaw: $(cat "$dir/third.out")"
timeout 30 qemu-io -f raw -r -c 'read -P 0x22 0 4k' "$(uri a.img)" >/dev/null || fail "a.img after the thaw"
pass "once the file system thaws, a.img's attach finishes, its client's write lands, and the waiting client is served"
