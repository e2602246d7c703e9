#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-direct-io.sh — nbdsnapd --cache none: origin and difference storage opened O_DIRECT (checked in
# /proc/PID/fdinfo), qemu-io's unaligned writes and reads (odd offsets and lengths, straddling blocks) before
# and after a take give the bytes of a model file, so do libnbd's aligned and unaligned reads with simple and
# structured replies, the image holds the origin as it was at the take, and the file on disk ends up equal to
# the model. Exits 77 (skip) where the temporary directory has no O_DIRECT.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

requires dd if=/dev/zero of="$dir/probe" bs=4096 count=1 oflag=direct status=none

# A bad mode is refused at start, naming the option and the modes.
if "$NBDSNAPD" --cache bogus --state-dir "$dir/bad-state" --listen "unix:$dir/bad.sock" --control none \
  >"$dir/bad.log" 2>&1; then
  fail "--cache bogus was accepted"
fi
grep -q "\-\-cache 'bogus' is not a cache mode: give none" "$dir/bad.log" ||
  fail "unclear error: $(cat "$dir/bad.log")"

size=$((8 << 20))
truncate -s $size "$dir/disk.raw"
qemu-io -f raw -c "write -P 0x11 0 $size" "$dir/disk.raw" >/dev/null
cp "$dir/disk.raw" "$dir/model.raw"
start_nbdsnapd --cache none --origin "disk=$dir/disk.raw"

# open_with_direct FILE: some descriptor of nbdsnapd on FILE has O_DIRECT (040000 octal on Linux) in its flags.
open_with_direct() {
  local pid fd flags
  pid=$server_pid
  for fd in /proc/"$pid"/fd/*; do
    [[ $(readlink "$fd") == "$1" ]] || continue
    flags=$(awk '/^flags:/ {print $2}' /proc/"$pid"/fdinfo/"${fd##*/}")
    (((8#$flags & 8#40000) != 0)) && return 0
  done
  return 1
}
open_with_direct "$dir/disk.raw" || fail "the origin is not open with O_DIRECT"

# write_both PATTERN OFFSET LENGTH: the same write through nbdsnapd and into the model.
write_both() {
  qemu-io -f raw -c "write -P $1 $2 $3" "$(uri disk)" >/dev/null || fail "write $*"
  qemu-io -f raw -c "write -P $1 $2 $3" "$dir/model.raw" >/dev/null
}
write_both 0xa1 1 3
write_both 0xa2 511 1026
write_both 0xa3 4095 8193
write_both 0xa4 1048575 2
cp "$dir/model.raw" "$dir/model-at-take.raw"
snapshot s1 disk
open_with_direct "$dir/s1.diff" || fail "the difference storage is not open with O_DIRECT"

# First touches of chunks after the take: copy-on-write from the O_DIRECT origin into O_DIRECT storage.
write_both 0xb1 7 100
write_both 0xb2 300001 70000
write_both 0xb3 4096 512
write_both 0xb4 $((size - 3)) 3
write_both 0xb5 1048000 1000

qemu-io -f raw -r -c 'read -P 0xa2 511 1026' -c 'read -P 0xa3 4095 1' -c 'read -P 0x11 4 1' "$(uri disk@s1)" \
  >"$dir/read.log" || fail "unaligned reads of the image: $(cat "$dir/read.log")"
qemu-io -f raw -r -c 'read -P 0xb2 300001 70000' -c 'read -P 0xb4 8388605 3' "$(uri disk)" \
  >"$dir/read.log" || fail "unaligned reads of the origin: $(cat "$dir/read.log")"
# Through libnbd, with simple and structured replies: aligned reads (the server reads them O_DIRECT straight
# into the reply, server/request_executor.cpp) and unaligned ones (bounce buffer) give the models' bytes, on
# the origin and on the image (untouched chunks from the origin, touched ones from the storage).
"$PY" - "$sock" "$dir/model.raw" "$dir/model-at-take.raw" >"$dir/libnbd.log" 2>&1 <<'PYEOF' ||
import sys, nbd
sock, origin_model, image_model = sys.argv[1:4]
reads = [(0, 4096), (4096, 65536), (262144, 262144), (1 << 20, 1 << 20), (8388608 - 4096, 4096),
         (0, 8388608 // 4), (1, 4096), (4095, 8193), (300001, 70000), (8388605, 3), (511, 1026), (7, 1)]
for export, model in (("disk", origin_model), ("disk@s1", image_model)):
    with open(model, "rb") as f:
        expected = f.read()
    for structured in (False, True):
        h = nbd.NBD()
        h.set_request_structured_replies(structured)
        h.connect_uri(f"nbd+unix:///{export}?socket={sock}")
        assert h.get_structured_replies_negotiated() == structured
        for offset, length in reads:
            if h.pread(length, offset) != expected[offset:offset + length]:
                sys.exit(f"{export} structured={structured}: read of {length} at {offset} differs")
        h.shutdown()
PYEOF
  fail "libnbd reads: $(cat "$dir/libnbd.log")"
qemu-img compare -q -f raw -F raw "$dir/model-at-take.raw" "$(uri disk@s1)" || fail "image differs from the take"
qemu-img compare -q -f raw -F raw "$dir/model.raw" "$(uri disk)" || fail "origin differs from the model"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0"
cmp "$dir/model.raw" "$dir/disk.raw" || fail "the origin file differs from the model"
echo PASS
