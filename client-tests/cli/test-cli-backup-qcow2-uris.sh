#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-backup-qcow2-uris.sh — a full qcow2 point is the export the --image URI names, whichever reader
# writes it (qemu-img convert or the copier): export names with spaces, '%', '#', '?', '&', non-ASCII bytes and
# 250 bytes, percent-encoded; TCP on 127.0.0.1 and [::1]. URIs libnbd opens and QEMU refuses (two socket=
# parameters, a host in nbd+unix://) are written by the copier instead of failing the backup.
# Usage: test-cli-backup-qcow2-uris.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
requires qemu-img --version
requires qemu-nbd --version

encode() { "$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="@"))' "$1"; }
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# same_as_image URI POINT-FILE: the point reads as the image, byte for byte.
same_as_image() { qemu-img compare -q -f raw -F qcow2 "$1" "$2"; }

port4=$(free_port)
port6=$(free_port)
listen6=()
"$PY" -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null && listen6=(--listen "tcp:[::1]:$port6")
truncate -s 4M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img" --listen "tcp:127.0.0.1:$port4" "${listen6[@]}"

# Every origin holds a pattern of its own, so a point of another origin's image cannot pass for it.
n=0
for name in 'sp ace' 'pc%41' 'ha#sh' 'qu?es' 'am&p' 'café' "$(printf 'L%.0s' $(seq 250))"; do
  n=$((n + 1))
  truncate -s 4M "$dir/o$n.img"
  run_cli 0 origin attach "$name" "$dir/o$n.img"
  qemu-io -f raw -c "write -P $((n + 0x20)) 1M 1M" "nbd+unix:///$(encode "$name")?socket=$sock" >/dev/null
  run_cli 0 snapshot create "s$n" --origin "$name" --storage "$dir/s$n.diff:4M"
  run_cli 0 snapshot take "s$n"
  image="nbd+unix:///$(encode "$name@s$n")?socket=$sock"
  run_cli 0 --json backup --image "$image" --format qcow2 --to "$dir/chain$n" --verify
  same_as_image "$image" "$dir/chain$n/0001.qcow2" || fail "the point of '$name@s$n' is not its image"
  qemu-io -f qcow2 -r -c "read -P $((n + 0x20)) 1M 1M" "$dir/chain$n/0001.qcow2" >/dev/null ||
    fail "the point of '$name@s$n' lacks its origin's pattern"
done
pass "export names with spaces, %, #, ?, &, non-ASCII and 250 bytes: each point is its own image (verified)"

write 0x5a 0 1M disk
run_cli 0 snapshot create t --origin disk --storage "$dir/t.diff:4M"
run_cli 0 snapshot take t
write 0x6b 0 2M disk  # the origin moves on; the image must not
tcp_uris=("nbd://127.0.0.1:$port4/disk@t")
((${#listen6[@]})) && tcp_uris+=("nbd://[::1]:$port6/disk@t")
for image in "${tcp_uris[@]}"; do
  rm -rf "$dir/chain-tcp"
  run_cli 0 --json backup --image "$image" --format qcow2 --to "$dir/chain-tcp" --verify
  same_as_image "$(uri disk@t)" "$dir/chain-tcp/0001.qcow2" || fail "the point of $image is not the image"
done
pass "TCP image URIs (${tcp_uris[*]}): each point is the image"

# libnbd takes the last of two socket= parameters and ignores a host in nbd+unix://; QEMU refuses both
# ("No valid URL specified"), so qemu-img convert must not be given them.
for image in "nbd+unix:///disk@t?socket=$dir/none.sock&socket=$sock" "nbd+unix://localhost/disk@t?socket=$sock"; do
  rm -rf "$dir/chain-odd"
  run_cli 0 --json backup --image "$image" --format qcow2 --to "$dir/chain-odd" --verify
  same_as_image "$(uri disk@t)" "$dir/chain-odd/0001.qcow2" || fail "the point of $image is not the image"
done
pass "URIs libnbd opens and QEMU refuses (two socket= parameters, a host in nbd+unix://) still back up"
