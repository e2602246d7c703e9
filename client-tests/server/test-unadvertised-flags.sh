#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-unadvertised-flags.sh — a client may send command flags the export did not advertise (libnbd with strict
# mode off does). The server must answer each with an error or a success and go on serving: nbdkit 1.32
# (Debian 12) aborted on NBD_CMD_WRITE_ZEROES with FAST_ZERO on an origin whose plugin cannot zero fast, which
# ended every origin's tracking (the filter now advertises fast zero and fails it with ENOTSUP, NBD spec
# "NBD_CMD_FLAG_FAST_ZERO"). Every flag on every command, on an origin and on its image, while a snapshot is
# taken; then the origin still tracks writes and the image still holds what the origin held at take.
# Usage: test-unadvertised-flags.sh nbdsnapd|filter BINARY
source "$(dirname "$0")/../functions.sh"
use_front_end "${1:?usage: $0 nbdsnapd|filter BINARY}" "${2:?usage: $0 nbdsnapd|filter BINARY}"

# file plugin with cache=none: one whose fast zero depends on the file system, as a real origin's
"$PY" -c 'import sys; open(sys.argv[1], "wb").write(bytes(range(256)) * 16384)' "$dir/disk.raw"  # 4 MiB
cp "$dir/disk.raw" "$dir/at-take.raw"
if [[ $FRONT_END == nbdsnapd ]]; then
  start_server --log nbdsnapd --origin "disk=$dir/disk.raw"
  origin=disk
  origin_uri=$(uri disk)
else
  start_server --log filter file "$dir/disk.raw" nbdsnap-state-dir="$dir/state"
  origin=default
  origin_uri=$(uri '')
fi
mkdir "$dir/st"
ctl "{\"command\":\"snapshot-create\",\"name\":\"s\",\"origins\":[\"$origin\"],\"storage\":[{\"path\":\"$dir/st/s.diff\",\"size\":$((8 << 20))}]}" \
  '{"command":"snapshot-take","name":"s"}' >/dev/null || fail "take"

# Each command with each flag bit the protocol defines, and with all of them; a new connection per export
# after each, so an abort or a dropped connection names the request that caused it.
timeout 120 "$PY" - "$origin_uri" "$(image_uri "$origin" s)" <<'PYEOF' || fail "$FRONT_END: unadvertised flags"
import sys
import nbd
origin_uri, image_uri = sys.argv[1:3]
FLAGS = {"FUA": nbd.CMD_FLAG_FUA, "NO_HOLE": nbd.CMD_FLAG_NO_HOLE, "DF": nbd.CMD_FLAG_DF,
         "REQ_ONE": nbd.CMD_FLAG_REQ_ONE, "FAST_ZERO": nbd.CMD_FLAG_FAST_ZERO, "all": 0x3f}

def connect(uri):
    h = nbd.NBD()
    h.set_strict_mode(0)  # send what the server did not advertise
    h.connect_uri(uri)
    return h

def commands(h, flags):
    data = bytes([0xee]) * 4096
    yield "write", lambda: h.pwrite(data, 65536, flags)
    yield "zero", lambda: h.zero(4096, 131072, flags)
    yield "trim", lambda: h.trim(4096, 196608, flags)
    yield "read", lambda: h.pread(4096, 0, flags)
    yield "flush", lambda: h.flush(flags)
    yield "cache", lambda: h.cache(4096, 0, flags)
    yield "block-status", lambda: h.block_status(4096, 0, lambda *a: 0, flags)

answered = 0
for export, uri in (("origin", origin_uri), ("image", image_uri)):
    for flag_name, flags in FLAGS.items():
        for name in ("write", "zero", "trim", "read", "flush", "cache", "block-status"):
            h = connect(uri)
            try:
                dict(commands(h, flags))[name]()
            except nbd.Error:
                pass  # an error reply (or a dropped connection) is an answer; an abort is not
            answered += 1
            try:
                connect(uri).pread(512, 0)
            except nbd.Error as e:
                sys.exit(f"{export}: after {name} with {flag_name} the server no longer serves: {e}")
print(f"{answered} requests answered")
PYEOF

# Still tracked: the image holds the origin at take (the writes and zeros above are not in it).
timeout 60 nbdcopy "$(image_uri "$origin" s)" "$dir/image.raw" || fail "$FRONT_END: image read"
cmp "$dir/image.raw" "$dir/at-take.raw" || fail "$FRONT_END: the image changed after unadvertised flags"
info=$(ctl '{"command":"snapshot-info","name":"s"}')
[[ $(jf "$info" 'r["snapshot"]["state"]') == taken ]] || fail "$FRONT_END: the snapshot is not taken: $info"
ctl '{"command":"snapshot-destroy","name":"s"}' >/dev/null || fail "destroy"
stop_server TERM
pass "$FRONT_END: every command with unadvertised flags is answered; the origin stays tracked"
