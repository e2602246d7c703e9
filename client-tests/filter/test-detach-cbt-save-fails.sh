#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-detach-cbt-save-fails.sh — a forced origin-detach whose CBT state cannot be saved still detaches the
# origin, and its reply says both, in nbdsnapd's words: "origin 'a' is detached, but its CBT state could not
# be saved (...), so its next attach starts a new CBT generation". It used to be the save's bare error (ok:
# false) with the origin already gone, so an agent took it for still attached and tracked (attack14f F3).
# The next open attaches it again with a new generation: nothing written meanwhile can be missed.
# Usage: test-detach-cbt-save-fails.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

mkdir "$dir/disks" "$dir/state"
truncate -s 4M "$dir/disks/a"
start_filter file dir="$dir/disks" nbdsnap-state-dir="$dir/state"
write 0x11 0 64K a
generation=$(ctl '{"command":"cbt-info","origin":"a"}' | jq -r .cbt.generation)
mkdir "$dir/state/a.cbt.tmp"  # where the save writes first: it fails
reply=$(ctl_error '{"command":"origin-detach","name":"a","force":true}')
expected="origin 'a' is detached, but its CBT state could not be saved (*), so its next attach starts a new CBT"
expected+=" generation: back it up fully then"
# shellcheck disable=SC2053 # $expected is a pattern
[[ $(jq -r .error.message <<<"$reply") == $expected ]] || fail "a detach whose CBT save failed: $reply"
[[ $(ctl '{"command":"origins"}' | jq -c '[.origins[].name]') == "[]" ]] || fail "a is still attached: $reply"
rmdir "$dir/state/a.cbt.tmp"
write 0x22 1M 64K a  # opens it again: attached anew
[[ $(ctl '{"command":"cbt-info","origin":"a"}' | jq -r .cbt.generation) != "$generation" ]] ||
  fail "the attach after a detach without a CBT save resumed generation $generation"
stop_server TERM
pass "a detach whose CBT save fails detaches, says so, and the next attach starts a new generation"
