#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-direct-io-aligned-edges.sh — nbdsnapd --cache none, whose READ replies carry their data on an aligned
# address (server/request_executor.cpp) so O_DIRECT reads land in them: reads around the edges (lengths 1 to
# 32 MiB, offsets 0, 1, 511, 4095, the end of an origin whose size is no multiple of 512) give the model's
# bytes with simple and structured replies, on the origin and on an image (untouched, copied, and copied then
# rewritten chunks); reads past the end and over 32 MiB are refused. Pooled reply buffers serve both reply
# kinds, connections in turn and at once, with errors and holes in between; a corrupted image's reads fail;
# clients that hang up mid-reply or never read do not hurt the others. The same over TLS, and on loop devices
# with 512 and 4096 byte logical blocks (root only). Exits 77 where the directory has no O_DIRECT.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

requires dd if=/dev/zero of="$dir/probe" bs=4096 count=1 oflag=direct status=none
# edges MODE ARGS: one run of direct_io_edges.py, at most 120 s (libnbd waits for ever on a short reply).
edges() {
  timeout -k 5 120 "$PY" "$here/direct_io_edges.py" "$@" >"$dir/edges.log" 2>&1 ||
    fail "direct_io_edges.py $1 $2 (status $?): $(cat "$dir/edges.log")"
}

# An origin of 36 MiB + 1537 bytes (no multiple of 512): random bytes with a zero MiB (holes for OFFSET_HOLE).
size=$(((36 << 20) + 1537))
"$PY" - "$dir/disk.raw" $size <<'PYEOF'
import random, sys
data = bytearray(random.Random(7).randbytes(int(sys.argv[2])))
data[2 << 20:3 << 20] = bytes(1 << 20)
open(sys.argv[1], "wb").write(data)
PYEOF
cp "$dir/disk.raw" "$dir/model.raw"
start_nbdsnapd --cache none --origin "disk=$dir/disk.raw"

write_both() {
  qemu-io -f raw -c "write -P $1 $2 $3" "$(uri disk)" >/dev/null || fail "write $*"
  qemu-io -f raw -c "write -P $1 $2 $3" "$dir/model.raw" >/dev/null
}
snapshot s1 disk
cp "$dir/model.raw" "$dir/model-at-take.raw"
# Copied chunks, one of them rewritten after its copy; the chunk at the end of the disk too.
write_both 0xb1 4095 70000
write_both 0xb2 $((5 << 20)) $((1 << 20))
write_both 0xb3 $((5 << 20)) 4096
write_both 0xb4 $((size - 3000)) 3000
edges edges "$(uri disk)" "$dir/model.raw"
edges edges "$(uri disk@s1)" "$dir/model-at-take.raw"
pass "edges of the origin and of the image"
edges pool "$(uri disk)" "$dir/model.raw"
edges pool "$(uri disk@s1)" "$dir/model-at-take.raw"
pass "pooled buffers across reply kinds and connections"
edges hostile "$sock" disk "$dir/model.raw"
edges hangups "$(uri disk)" "$dir/model.raw"
pass "hostile clients"
qemu-img compare -q -f raw -F raw "$dir/model-at-take.raw" "$(uri disk@s1)" || fail "image differs from the take"
ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null

# A storage limit of three chunks and 4 MiB written: the snapshot is corrupted and its image's reads fail.
ctl "{\"command\":\"snapshot-create\",\"name\":\"s2\",\"origins\":[\"disk\"],\"limit\":786432,\"storage\":[{\"path\":\"$dir/s2.diff\",\"size\":1048576}]}" \
  '{"command":"snapshot-take","name":"s2"}' >/dev/null
write_both 0xc1 $((8 << 20)) $((4 << 20))
edges corrupted "$(uri disk@s2)"
edges edges "$(uri disk)" "$dir/model.raw"
pass "a corrupted image's reads fail, the origin's go on"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0"
cmp "$dir/model.raw" "$dir/disk.raw" || fail "the origin file differs from the model"

# TLS (PSK): the same reads through GnuTLS, and clients that hang up while a record is half sent.
"$here/../tls-credentials.sh" psk "$dir/keys.psk" agent1 || exit $?
start_nbdsnapd --log tls --cache none --origin "disk=$dir/disk.raw" --tls require --tls-psk "$dir/keys.psk"
tls_uri="nbds+unix://agent1@/disk?socket=$sock&tls-psk-file=$dir/keys.psk"
edges edges "$tls_uri" "$dir/model.raw"
edges pool "$tls_uri" "$dir/model.raw"
edges hangups "$tls_uri" "$dir/model.raw"
pass "edges, pooled buffers and hang-ups over TLS"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd (TLS) did not exit 0"

# Loop devices with 512 and 4096 byte logical blocks as origins (root and losetup --sector-size only).
if ((EUID != 0)) || ! command -v losetup >/dev/null; then
  echo "SKIP (part): loop devices need root and losetup"
  echo PASS
  exit 0
fi
loops=()
detach_loops() { local l; for l in "${loops[@]}"; do losetup -d "$l"; done; }
cleanup_fn detach_loops
truncate -s $((36 << 20)) "$dir/loop.raw"
dd if="$dir/model.raw" of="$dir/loop.raw" bs=1M count=36 conv=notrunc status=none
head -c $((36 << 20)) "$dir/model.raw" >"$dir/loop-model.raw"
for sector in 512 4096; do
  loop=$(losetup --find --show --sector-size $sector --direct-io=on "$dir/loop.raw" 2>/dev/null) || {
    echo "SKIP (part): losetup --sector-size $sector refused"
    continue
  }
  loops+=("$loop")
  [[ $(blockdev --getss "$loop") == "$sector" ]] || fail "$loop has $(blockdev --getss "$loop") byte sectors"
  start_nbdsnapd --log "loop$sector" --cache none --origin "disk=$loop"
  edges edges "$(uri disk)" "$dir/loop-model.raw"
  snapshot "l$sector" disk
  edges edges "$(uri "disk@l$sector")" "$dir/loop-model.raw"
  stop_server TERM
  ((server_status == 0)) || fail "nbdsnapd on $loop did not exit 0"
  pass "loop device with $sector byte sectors"
done
echo PASS
