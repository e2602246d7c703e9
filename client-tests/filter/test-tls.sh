#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-tls.sh — nbdkit's own --tls with the filter in front: origins and images over nbds+unix:// (PSK) and
# nbds://127.0.0.1 (X.509); an image read over TLS equals the origin at the take; a plain client is refused.
# The filter's control socket stays a local Unix socket (nbdkit-nbdsnap-filter(1), CONTROL).
# Usage: test-tls.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"
tls_credentials=$here/../tls-credentials.sh
"$tls_credentials" x509 "$dir/pki" || exit $?
"$tls_credentials" psk "$dir/keys.psk" agent1
psk_uri() { echo "nbds+unix://agent1@/$1?socket=$sock&tls-psk-file=$dir/keys.psk"; }

truncate -s 32M "$dir/s.diff" "$dir/t.diff"
start_filter --log unix --tls=require --tls-psk="$dir/keys.psk" memory size=16M nbdsnap-default-origin=ram \
  nbdsnap-storage="$dir/s.diff:32M"
nbdcopy -- [ nbdkit pattern size=16M ] "$(psk_uri ram)" || fail "writing the origin over TLS (PSK)"
ctl '{"command":"snapshot-create","name":"s1","origins":["ram"]}' >/dev/null
ctl '{"command":"snapshot-take","name":"s1"}' >/dev/null
nbdcopy "$(psk_uri ram)" "$dir/take-time.img"
nbdcopy -- [ nbdkit random size=1M ] "$(psk_uri ram)"  # after the take
nbdcopy "$(psk_uri ram@s1)" "$dir/image.img" || fail "reading the image over nbds+unix://"
cmp "$dir/image.img" "$dir/take-time.img" || fail "the image read over TLS is not the origin at the take"
nbdinfo "$(uri ram@s1)" >/dev/null 2>&1 && fail "a plain client was served under --tls=require"
if out=$(nbdinfo --list "$(uri '')" 2>&1); then fail "a plain --list succeeded: $out"; fi
[[ $out != *ram@s1* ]] || fail "a plain --list revealed exports: $out"
pass "origin and image over nbds+unix:// (PSK); plain clients refused"
ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null
stop_server

# TCP on 127.0.0.1 with X.509: nbdkit listens there, the filter's control socket stays Unix.
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -f "$ctl"
setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit -f -v -i 127.0.0.1 -p "$port" \
  -P "$dir/nbdkit-tcp.pid" --tls=require --tls-certificates="$dir/pki" --filter="$FILTER" memory size=16M \
  nbdsnap-default-origin=ram nbdsnap-storage="$dir/t.diff:32M" nbdsnap-control="$ctl" \
  </dev/null >"$dir/nbdkit-tcp.log" 2>&1 &
server_pid=$!
server_log=$dir/nbdkit-tcp.log
track_pid "$server_pid"
wait_for_path "$ctl" "$server_pid"
tcp_uri() { echo "nbds://127.0.0.1:$port/$1?tls-certificates=$dir/pki"; }
for _ in $(seq 100); do timeout 10 nbdinfo "$(tcp_uri ram)" >/dev/null 2>&1 && break; sleep 0.1; done
nbdcopy -- [ nbdkit pattern size=16M ] "$(tcp_uri ram)" || fail "writing the origin over nbds://127.0.0.1"
ctl '{"command":"snapshot-create","name":"s2","origins":["ram"]}' >/dev/null
ctl '{"command":"snapshot-take","name":"s2"}' >/dev/null
qemu-img compare --object "tls-creds-x509,id=t0,dir=$dir/pki,endpoint=client" --image-opts \
  "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,export=ram@s2,tls-creds=t0" \
  "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,export=ram,tls-creds=t0" >/dev/null ||
  fail "qemu-img: the image over nbds://127.0.0.1 differs from the unchanged origin"
nbdinfo "nbd://127.0.0.1:$port/ram@s2" >/dev/null 2>&1 && fail "a plain TCP client was served"
ctl '{"command":"snapshot-destroy","name":"s2"}' >/dev/null
stop_server
pass "origin and image over nbds://127.0.0.1 (X.509)"
