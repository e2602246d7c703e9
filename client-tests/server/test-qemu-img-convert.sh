#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-qemu-img-convert.sh — qemu-img convert writes a sparse image into an origin (zeroes, fast zero and
# writes over NBD) and copies a snapshot image out again; qemu-img compare finds them identical.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 32M "$dir/disk.raw"
qemu-io -f raw -c 'write -P 0x5a 0 64k' "$dir/disk.raw" >/dev/null   # old data the convert must overwrite
qemu-img create -q -f raw "$dir/source.raw" 32M
qemu-io -f raw -c 'write -P 0xaa 1M 3M' -c 'write -P 0xbb 20M 128k' -c 'write -z 30M 1M' "$dir/source.raw" >/dev/null
start_nbdsnapd --origin "disk=$dir/disk.raw"

qemu-img convert -n -f raw -O raw "$dir/source.raw" "$(uri disk)" || fail "convert into the origin"
qemu-img compare -q -f raw -F raw "$dir/source.raw" "$(uri disk)" || fail "origin differs from the source"
snapshot s1 disk
qemu-io -f raw -c 'write -P 0xcc 1M 1M' "$(uri disk)" >/dev/null
qemu-img convert -f raw -O raw "$(uri disk@s1)" "$dir/copy.raw" || fail "convert out of the image"
qemu-img compare -q -f raw -F raw "$dir/source.raw" "$dir/copy.raw" || fail "image copy differs from the source"
qemu-img compare -q -f raw -F raw "$dir/source.raw" "$(uri disk)" && fail "origin write did not land"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0"
echo PASS
