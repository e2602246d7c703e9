#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-detach-during-handshake.sh — a client whose NBD_OPT_GO has resolved origin d, but whose GO reply still
# waits in a full socket buffer, is a client of d: origin-detach without force is refused, with force its
# connection is closed, and after d is attached again and a snapshot taken, that connection never writes d
# untracked (issue 14, part 4; before the fix the detach went through and the write reached the disk).
source "$(dirname "$0")/common.sh" "$1"

truncate -s 16M "$tmp/d.img"
start_nbdsnapd --origin "d=$tmp/d.img"
mkfifo "$tmp/go"
/usr/bin/python3 "$here/held_go_client.py" "$sock" d "$tmp/go" >"$tmp/client.out" 2>&1 &
client=$!
trap 'rc=$?; kill $client 2>/dev/null || true; (exit $rc); cleanup' EXIT  # the client waits on a FIFO: never leave it behind
for _ in $(seq 300); do grep -q sent "$tmp/client.out" && break; sleep 0.1; done
grep -q sent "$tmp/client.out" || fail "client did not start: $(cat "$tmp/client.out")"


reply=$(control '{"command":"origin-detach","name":"d"}' || true)
[[ $(json_field "$reply" 'r["error"]["code"]') == busy ]] ||
  fail "detach of an origin whose GO was resolved was not refused: $reply"
echo "ok: origin-detach without force is refused while a client's GO reply is pending"

control '{"command":"origin-detach","name":"d","force":true}' >/dev/null
control "{\"command\":\"origin-attach\",\"name\":\"d\",\"path\":\"$tmp/d.img\"}" >/dev/null
snapshot s d
echo go >"$tmp/go"
wait "$client" || true
result=$(cat "$tmp/client.out")
case $result in
  *"write succeeded"*) fail "a connection that held the detached origin wrote it: $result" ;;
esac
qemu-io -f raw -r -c 'read -P 0 0 4k' "$(uri d@s)" >/dev/null || fail "the image of the new snapshot changed"
qemu-io -f raw -r -c 'read -P 0 0 4k' "$(uri d)" >/dev/null || fail "the origin was written: $result"
cbt=$(control '{"command":"cbt-map","origin":"d"}')
echo "ok: the held connection could not write after force detach, attach and take ($(tail -1 "$tmp/client.out"))"
