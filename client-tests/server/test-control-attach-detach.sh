#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-control-attach-detach.sh — a config file with an origin and a TCP listener; origin-attach by path over
# the control socket; origin-detach is refused while a client is connected, and with force disconnects it and
# drops the origin's image from its snapshot (with an event).
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 16M "$dir/a.raw" "$dir/b.raw"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$dir/nbdsnapd.conf" <<CONF
# nbdsnapd test configuration
origin = a=$dir/a.raw
listen = tcp:127.0.0.1:$port
# origins over TCP are off by default (images only)
tcp-origins = true
log-level = debug
CONF
start_nbdsnapd --config "$dir/nbdsnapd.conf"
qemu-io -f raw -c 'write -P 0x41 0 64k' "nbd://127.0.0.1:$port/a" >/dev/null || fail "TCP listener"
qemu-io -f raw -r -c 'read -P 0x41 0 64k' "$(uri a)" >/dev/null || fail "Unix listener"

reply=$(ctl "{\"command\":\"origin-attach\",\"name\":\"b\",\"path\":\"$dir/b.raw\"}")
[[ $(jf "$reply" 'r["origin"]["uri"]') == "$(uri b)" ]] || fail "origin uri: $reply"
ctl "{\"command\":\"origin-attach\",\"name\":\"b2\",\"path\":\"$dir/b.raw\"}" >/dev/null && fail "same file attached twice"
nbdinfo --list "$(uri '')" | grep '^export="b":' >/dev/null || fail "attached origin not listed"

# A client holding a connection to b.
/usr/bin/python3 -c '
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
print("connected", flush=True)
sys.stdin.read()
try:
    h.pread(512, 0)
    print("still served")
except nbd.Error:
    print("disconnected")
' "$(uri b)" < <(while [[ ! -f $dir/release ]]; do sleep 0.1; done) >"$dir/holder.out" 2>&1 &
holder=$!
until grep -q connected "$dir/holder.out" 2>/dev/null; do
  kill -0 $holder 2>/dev/null || fail "holder client failed: $(cat "$dir/holder.out")"
  sleep 0.1
done
[[ $(jf "$(ctl '{"command":"origin-info","name":"b"}')" 'r["origin"]["clients"]') == 1 ]] ||
  fail "client count"
snapshot s1 b
nbdinfo "$(uri b@s1)" >/dev/null || fail "image of b not served"
reply=$(ctl '{"command":"origin-detach","name":"b"}' || true)
[[ $(jf "$reply" 'r["error"]["code"]') == busy ]] || fail "detach with a client was not refused: $reply"
ctl '{"command":"origin-detach","name":"b","force":true}' >/dev/null || fail "forced detach failed"
# The snapshot lives on without b's image, and says so with an event.
nbdinfo "$(uri b@s1)" >/dev/null 2>&1 && fail "the image of a detached origin is still served"
[[ $(jf "$(ctl '{"command":"snapshot-info","name":"s1"}')" 'len(r["snapshot"]["images"])') == 0 ]] ||
  fail "snapshot still lists the image of the detached origin"
events=$(ctl '{"command":"events-wait","after":0}')
jf "$events" '[e["reason"] for e in r["events"] if e["type"] == "origin_detached" and e["origin"] == "b"][0]' |
  grep -q 'forced out of its snapshot' || fail "no origin_detached event for the forced detach: $events"
ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null
touch "$dir/release"
wait $holder || true
grep -q disconnected "$dir/holder.out" || fail "the client was not disconnected: $(cat "$dir/holder.out")"
nbdinfo "$(uri b)" >/dev/null 2>&1 && fail "detached origin still served"
ctl "{\"command\":\"origin-attach\",\"name\":\"b2\",\"path\":\"$dir/b.raw\"}" >/dev/null || fail "reattach after detach"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0"
echo PASS
