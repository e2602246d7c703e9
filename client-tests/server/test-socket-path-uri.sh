#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-socket-path-uri.sh — the export URIs nbdsnapd reports stay valid when the socket path holds bytes that
# mean something in a URI (space, '&', '#'): libnbd (nbdinfo) and QEMU (qemu-io) open them as reported.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

sock="$dir/a b&c#d/nbd.sock"  # nbdsnapd creates the directory
truncate -s 1M "$dir/disk.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw"
snapshot s1 disk
origin_uri=$(jf "$(ctl '{"command":"origin-info","name":"disk"}')" 'r["origin"]["uri"]')
[[ $origin_uri == "nbd+unix:///disk?socket=$dir/a%20b%26c%23d/nbd.sock" ]] || fail "origin uri: $origin_uri"
[[ $(nbdinfo --size "$origin_uri") == 1048576 ]] || fail "nbdinfo cannot open $origin_uri"
image_uri=$(jf "$(ctl '{"command":"snapshot-info","name":"s1"}')" \
  '[i["uri"] for i in r["snapshot"]["images"] if i["origin"] == "disk"][0]')
qemu-io -f raw -r -c 'read -P 0 0 64k' "$image_uri" >/dev/null || fail "qemu-io cannot read $image_uri"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0"
echo PASS
