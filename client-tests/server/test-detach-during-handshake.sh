#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-detach-during-handshake.sh — a client whose NBD_OPT_GO has resolved origin d, but whose GO reply still
# waits in a full socket buffer, is a client of d: origin-detach without force is refused, with force its
# connection is closed, and after d is attached again and a snapshot taken, that connection never writes d
# untracked (issue 14, part 4; before the fix the detach went through and the write reached the disk).
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 16M "$dir/d.img"
start_nbdsnapd --origin "d=$dir/d.img"
mkfifo "$dir/go"
/usr/bin/python3 "$here/held_go_client.py" "$sock" d "$dir/go" >"$dir/client.out" 2>&1 &
client=$!
track_pid "$client"  # it waits on a FIFO: never leave it behind
for _ in $(seq 300); do grep -q sent "$dir/client.out" && break; sleep 0.1; done
grep -q sent "$dir/client.out" || fail "client did not start: $(cat "$dir/client.out")"


reply=$(ctl '{"command":"origin-detach","name":"d"}' || true)
[[ $(jf "$reply" 'r["error"]["code"]') == busy ]] ||
  fail "detach of an origin whose GO was resolved was not refused: $reply"
echo "ok: origin-detach without force is refused while a client's GO reply is pending"

ctl '{"command":"origin-detach","name":"d","force":true}' >/dev/null
ctl "{\"command\":\"origin-attach\",\"name\":\"d\",\"path\":\"$dir/d.img\"}" >/dev/null
snapshot s d
echo go >"$dir/go"
wait "$client" || true
result=$(cat "$dir/client.out")
case $result in
  *"write succeeded"*) fail "a connection that held the detached origin wrote it: $result" ;;
esac
qemu-io -f raw -r -c 'read -P 0 0 4k' "$(uri d@s)" >/dev/null || fail "the image of the new snapshot changed"
qemu-io -f raw -r -c 'read -P 0 0 4k' "$(uri d)" >/dev/null || fail "the origin was written: $result"
cbt=$(ctl '{"command":"cbt-map","origin":"d"}')
echo "ok: the held connection could not write after force detach, attach and take ($(tail -1 "$dir/client.out"))"
