#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-detach.sh — origin-detach through the control socket: refused while a client has the origin open;
# forced, it cuts the connected client off (its writes, trims, zeroes and reads fail with EIO, so no write is
# untracked) and the next open attaches the origin again with its CBT resumed.
# Usage: test-detach.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

disk=$dir/disk.img
mkdir "$dir/state"
truncate -s 8M "$disk"
start_filter --log detach file "$disk" nbdsnap-state-dir="$dir/state"

ctl_error '{"command":"origin-attach","name":"x","path":"'"$disk"'"}' >/dev/null
pass "origin-attach by path is not supported by the filter"

# A writer that keeps its connection open until told to write again.
mkfifo "$dir/go"
"$PY" - "$sock" "$dir/go" >"$dir/writer.out" 2>&1 <<'PYEOF' &
import sys, nbd
h = nbd.NBD()
h.connect_uri(f"nbd+unix:///?socket={sys.argv[1]}")
h.pwrite(b"\x01" * 4096, 0)
print("first write ok", flush=True)
open(sys.argv[2]).read()  # wait for the test
try:
    h.pwrite(b"\x02" * 4096, 4096)
    print("second write ok", flush=True)
except nbd.Error as e:
    print(f"second write failed: {e}", flush=True)
for name, call in (("trim", lambda: h.trim(4096, 0)), ("zero", lambda: h.zero(4096, 0))):
    try:
        call()
        print(f"{name} ok", flush=True)
    except nbd.Error as e:
        print(f"{name} failed: errno {e.errno}", flush=True)
try:
    h.pread(4096, 0)
    print("read ok", flush=True)
except nbd.Error as e:
    print(f"read failed: errno {e.errno}", flush=True)
PYEOF
writer=$!
for _ in $(seq 300); do grep -q "first write ok" "$dir/writer.out" && break; sleep 0.1; done
grep -q "first write ok" "$dir/writer.out" || fail "writer did not start: $(cat "$dir/writer.out")"

clients=$(ctl '{"command":"origin-info","name":"default"}' | jq .origin.clients)
[[ $clients == 1 ]] || fail "origin-info reports $clients clients, expected 1"
reply=$(ctl_error '{"command":"origin-detach","name":"default"}')
[[ $(jq -r .error.code <<<"$reply") == busy ]] || fail "detach with a client: $reply"
generation=$(ctl '{"command":"cbt-info","origin":"default"}' | jq -r .cbt.generation)
ctl '{"command":"origin-detach","name":"default","force":true}' >/dev/null
echo go >"$dir/go"
wait "$writer"
grep -q "second write failed" "$dir/writer.out" || fail "a write after forced detach went through: $(cat "$dir/writer.out")"
grep -q "trim failed: errno EIO" "$dir/writer.out" || fail "trim after forced detach: $(cat "$dir/writer.out")"
grep -q "zero failed: errno EIO" "$dir/writer.out" || fail "zero after forced detach: $(cat "$dir/writer.out")"
grep -q "read failed: errno EIO" "$dir/writer.out" || fail "read after forced detach: $(cat "$dir/writer.out")"
qemu-io -f raw -r -c 'read -P 0 4K 4K' "$disk" >/dev/null || fail "the refused write reached the disk"
qemu-io -f raw -r -c 'read -P 1 0 4K' "$disk" >/dev/null || fail "the refused trim or zero reached the disk"
pass "forced detach cuts off connected writers; plain detach is refused while they are connected"

qemu-io -f raw -c 'write -P 0x33 64K 4K' "$(uri '')" >/dev/null  # reattaches
info=$(ctl '{"command":"cbt-info","origin":"default"}')
[[ $(jq -r .cbt.generation <<<"$info") == "$generation" ]] || fail "CBT not resumed after detach: $info"
pass "the next open attaches the origin again with its CBT resumed"
