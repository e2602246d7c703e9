#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-storage-lock.sh — the filter's difference-storage files are locked like nbdsnapd's: while a snapshot
# uses one, qemu-io cannot open it and another nbdsnap process cannot take it as storage (it is refused naming
# nbdkit); destroy releases it.
# Usage: test-storage-lock.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

start_filter --log storage memory size=16M
qemu-io -f raw -c 'write -P 0x31 0 1M' "$(uri '')" >/dev/null
ctl '{"command":"snapshot-create","name":"s","origins":["default"],"storage":[{"path":"'"$dir"'/s.diff","size":16777216}]}' >/dev/null
ctl '{"command":"snapshot-take","name":"s"}' >/dev/null
qemu-io -f raw -c 'write -P 0x32 0 1M' "$(uri '')" >/dev/null  # its old chunk is now in s.diff
if qemu-io -f raw -c 'write -P 0x99 0 1M' "$dir/s.diff" >"$dir/qemu-io.out" 2>&1; then
  fail "qemu-io wrote the filter's difference storage"
fi
grep -q 'Failed to lock byte' "$dir/qemu-io.out" || fail "qemu-io: $(cat "$dir/qemu-io.out")"
qemu-io -f raw -r -c 'read -P 0x31 0 1M' "$(uri default@s)" >/dev/null || fail "image lost its take-time bytes"
pass "qemu-io cannot open a difference-storage file the filter uses"

# A second nbdkit with the filter, asked to use the same file as storage, is refused with the holder's name.
second_sock=$dir/second.sock second_ctl=$dir/second-ctl.sock
setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit -f -U "$second_sock" --filter="$FILTER" memory size=16M nbdsnap-control="$second_ctl" \
  </dev/null >"$dir/nbdkit-second.log" 2>&1 &
track_pid $!
wait_for_path "$second_ctl" "$!"
nbdinfo "nbd+unix:///?socket=$second_sock" >/dev/null  # attaches its origin
reply=$("$PY" -m nbdsnap --expect-error "$second_ctl" \
  '{"command":"snapshot-create","name":"t","origins":["default"],"storage":[{"path":"'"$dir"'/s.diff"}]}')
jq -e --arg pid "$server_pid" '.error.code == "busy" and (.error.message | contains("(nbdkit, pid " + $pid + ")"))' \
  <<<"$reply" >/dev/null || fail "second process took the storage: $reply"
pass "another process cannot take the filter's storage file, and is told who holds it"

ctl '{"command":"snapshot-destroy","name":"s"}' >/dev/null
"$PY" -m nbdsnap "$second_ctl" \
  '{"command":"snapshot-create","name":"t","origins":["default"],"storage":[{"path":"'"$dir"'/s.diff","size":16777216}]}' \
  >/dev/null || fail "the storage file stayed locked after destroy"
pass "destroy releases the storage file"
