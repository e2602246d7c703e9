#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-origin-list-on-frozen-state-dir.sh — a write of STATE_DIR/origins.json that waits for a frozen file
# system (the state directory on a hung NFS server) holds up only its own call: another call that must
# change the list answers busy, naming the list, within OriginFiles::kListWaitLimit (10 s) instead of
# waiting as long as the file system stalls, and calls that leave the list alone answer at once. Once the
# file system thaws, the first call finishes and the list holds what the answers said.
# Two listed origins whose files are missing (x, y) are unlisted by detaching them: that changes only the
# list. Before the fix the second detach waited for the thaw.
# Usage: test-origin-list-on-frozen-state-dir.sh NBDSNAPD. Skips (77) without root, mkfs.ext4, fsfreeze or a
# loop mount.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
freezable_fs 64M

truncate -s 4M "$dir/o.raw"
mkdir "$fs/state"
cat >"$fs/state/origins.json" <<JSON
{"version": 1, "origins": [{"name": "x", "path": "$dir/missing-x.raw", "read_only": false},
                           {"name": "y", "path": "$dir/missing-y.raw", "read_only": false}]}
JSON
start_nbdsnapd --state-dir "$fs/state" --origin "o=$dir/o.raw"
listed() { "$PY" -c 'import json,sys; print(" ".join(sorted(o["name"] for o in json.load(open(sys.argv[1]))["origins"])))' "$fs/state/origins.json"; }
[[ $(listed) == "o x y" ]] || fail "the list at start: $(listed)"

freeze_fs
ctl_waiting detach-x '{"command":"origin-detach","name":"x"}'
_nap 1
still_waiting detach-x "the list could not be written"

_now_ns
started_ns=$now_ns
reply=$(timeout 30 "$PY" -m nbdsnap --expect-error "$ctl" '{"command":"origin-detach","name":"y"}') ||
  fail "the detach of y did not answer busy within 30 s: $reply"
_now_ns
waited_ms=$(((now_ns - started_ns) / 1000000))
[[ $(jf "$reply" 'r["error"]["code"]') == busy ]] || fail "the detach of y: $reply"
grep "the origin list $fs/state/origins.json is being written by another call" <<<"$reply" >/dev/null ||
  fail "the refusal does not name the list: $reply"
timeout 10 "$PY" -m nbdsnap "$ctl" '{"command":"origins"}' '{"command":"origin-info","name":"o"}' >/dev/null ||
  fail "calls that leave the list alone waited for the frozen state directory"
timeout 10 nbdinfo "$(uri o)" >/dev/null || fail "origin o is not served while the list waits"
still_waiting detach-x "the list could not be written"
pass "while one call's write of the list waits, another's change is refused busy after $waited_ms ms"

thaw_fs
ctl_waited detach-x
[[ $(listed) == "o y" ]] || fail "the list after the thaw: $(listed)"
ctl '{"command":"origin-detach","name":"y"}' >/dev/null || fail "the detach of y after the thaw"
[[ $(listed) == "o" ]] || fail "the list at the end: $(listed)"
pass "once the file system thaws, x is unlisted, and y when detached again"
