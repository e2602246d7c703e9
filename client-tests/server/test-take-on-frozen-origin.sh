#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-take-on-frozen-origin.sh — a snapshot-take or cbt-reset that waits for an origin write stuck on a frozen
# file system (as on a hung NFS server) waits at most --drain-limit-ms, then answers busy having changed
# nothing, and meanwhile holds up only the requests that need its snapshot or origin (invariant 5). Origin o's
# file is on a file system frozen with fsfreeze while an NBD write to o is in pwrite: snapshot-take of s(o)
# answers busy naming o after the limit, and while it waits another snapshot of origin q is created, taken and
# destroyed, q's CBT is reset and what needs s or o is refused with busy, at once; the same for cbt-reset o.
# Once the file system thaws, the take succeeds and its image holds the write. Before the fix the take waited
# until the thaw, and every control request with it (found by a hostile tester, attack7 F2 and F3).
# Usage: test-take-on-frozen-origin.sh NBDSNAPD. Skips (77) without root, mkfs.ext4, fsfreeze or a loop mount.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
requires qemu-io --version
freezable_fs 32M

# Long enough for every check below to run while the take (or reset) still waits: each is a Python process,
# and on a loaded 2-core CI machine the requests on q and five checks took 4.5 s, past a 2.5 s limit (the take
# had given up before the destroy check, which then destroyed the never-taken snapshot at once).
limit_ms=10000
truncate -s 4M "$fs/o.raw" "$dir/q.raw"
start_nbdsnapd --log nbdsnapd --drain-limit-ms "$limit_ms" --origin "o=$fs/o.raw" --origin "q=$dir/q.raw"
ctl "{\"command\":\"snapshot-create\",\"name\":\"s\",\"origins\":[\"o\"],\"storage\":[{\"path\":\"$dir/s.diff\",\"size\":$((8 << 20))}]}" \
  >/dev/null || fail "create s"

freeze_fs
# The write waits in pwrite for the frozen file system, inside origin o's gate.
timeout 120 qemu-io -f raw -c 'write -P 0x77 0 64k' "$(uri o)" >"$dir/write.out" 2>&1 &
writer=$!
track_pid "$writer"
_nap 1
kill -0 "$writer" 2>/dev/null || fail "the write to the frozen origin returned: $(cat "$dir/write.out")"

# while_waiting_for_o REQUEST BUSY-WORDS BUSY-REQUEST...: while REQUEST waits for o's stuck write (started in
# the background), requests on q answer at once and succeed, and each BUSY-REQUEST (needing what REQUEST
# reserved) answers busy at once, saying BUSY-WORDS; then REQUEST answers busy itself, within the limit and a
# margin, naming o.
while_waiting_for_o() {
  local request=$1 words=$2 started_ns ended_ns now_ns
  shift 2
  _now_ns
  started_ns=$now_ns
  timeout 60 "$PY" -m nbdsnap --expect-error "$ctl" "$request" >"$dir/waiter.out" 2>&1 &
  local waiter=$!
  track_pid "$waiter"
  _nap 0.3
  timeout 5 "$PY" -m nbdsnap "$ctl" \
    "{\"command\":\"snapshot-create\",\"name\":\"b\",\"origins\":[\"q\"],\"storage\":[{\"path\":\"$dir/b.diff\",\"size\":$((8 << 20))}]}" \
    '{"command":"snapshot-take","name":"b"}' '{"command":"snapshot-destroy","name":"b"}' \
    '{"command":"checkpoint-delete","origin":"q","name":"b"}' '{"command":"cbt-reset","origin":"q"}' \
    >"$dir/q.out" 2>&1 || fail "requests on origin q waited for o's stuck write: $(cat "$dir/q.out")"
  local reply
  for busy in "$@"; do
    reply=$(timeout 5 "$PY" -m nbdsnap --expect-error "$ctl" "$busy") || fail "$busy did not fail at once: $reply"
    grep -q '"busy"' <<<"$reply" && grep -q "$words" <<<"$reply" || fail "$busy: not busy ($words): $reply"
  done
  kill -0 "$waiter" 2>/dev/null || fail "$request returned before the checks ended: $(cat "$dir/waiter.out")"
  wait "$waiter" || fail "$request did not fail: $(cat "$dir/waiter.out")"
  _now_ns
  ended_ns=$now_ns
  local took_ms=$(((ended_ns - started_ns) / 1000000))
  ((took_ms >= limit_ms && took_ms < limit_ms + 4000)) ||
    fail "$request answered after $took_ms ms, not within the limit of $limit_ms ms and a margin"
  reply=$(cat "$dir/waiter.out")
  grep -q '"busy"' <<<"$reply" && grep -q "origin 'o'" <<<"$reply" && grep -q "try again" <<<"$reply" ||
    fail "$request: not busy naming origin o: $reply"
}

o_busy=('{"command":"snapshot-take","name":"s"}' '{"command":"cbt-reset","origin":"o"}'
  '{"command":"checkpoint-delete","origin":"o","name":"x"}' '{"command":"origin-detach","name":"o","force":true}')
while_waiting_for_o '{"command":"snapshot-take","name":"s"}' "snapshot 's' is being taken" "${o_busy[@]}" \
  '{"command":"snapshot-destroy","name":"s","force":true}'
state=$(jf "$(ctl '{"command":"snapshot-info","name":"s"}')" 'r["snapshot"]["state"]')
[[ $state == created ]] || fail "snapshot s is $state after a take that gave up"
checkpoints=$(jf "$(ctl '{"command":"checkpoints","origin":"o"}')" 'len(r["checkpoints"])')
[[ $checkpoints == 0 ]] || fail "the take that gave up left $checkpoints checkpoint(s) on origin o"
pass "snapshot-take beside a write stuck on a frozen origin answers busy after ${limit_ms} ms, taking nothing; requests on q went on"

generation=$(jf "$(ctl '{"command":"cbt-info","origin":"o"}')" 'r["cbt"]["generation"]')
while_waiting_for_o '{"command":"cbt-reset","origin":"o"}' "origin 'o' is having its CBT reset" "${o_busy[@]}"
[[ $(jf "$(ctl '{"command":"cbt-info","origin":"o"}')" 'r["cbt"]["generation"]') == "$generation" ]] ||
  fail "the CBT reset that gave up changed the generation"
pass "cbt-reset beside the stuck write answers busy after ${limit_ms} ms, resetting nothing; requests on q went on"

thaw_fs
wait "$writer" || fail "the origin write failed: $(cat "$dir/write.out")"
ctl '{"command":"snapshot-take","name":"s"}' >/dev/null || fail "snapshot-take s after the thaw"
timeout 30 qemu-io -f raw -c 'write -P 0x55 0 64k' "$(uri o)" >/dev/null || fail "a write after the take"
timeout 30 qemu-io -r -f raw -c 'read -P 0x77 0 64k' "$(image_uri o s)" >/dev/null ||
  fail "the image of o in s lacks the write that finished before the take"
ctl '{"command":"snapshot-destroy","name":"s","force":true}' >/dev/null || fail "destroy s"
pass "once the file system thaws, the take succeeds and its image holds the write made before it"
