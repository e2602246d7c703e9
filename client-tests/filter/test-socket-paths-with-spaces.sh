#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-socket-paths-with-spaces.sh — nbdkit's -U socket and the control socket in directories whose names hold
# spaces: the filter finds its own NBD socket whole (it read /proc/net/unix up to the first space, then
# listed no exports, refused every file of `dir=` and handed agents URIs of a socket that does not exist: a
# hostile tester's finding), lists every file as an origin, and its URIs (percent-encoded) reach the exports.
# Usage: test-socket-paths-with-spaces.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

mkdir "$dir/D" "$dir/my disks" "$dir/ctl dir"
truncate -s 8M "$dir/D/a.img" "$dir/D/b.img"
sock="$dir/my disks/nbd.sock"
ctl="$dir/ctl dir/control.sock"
start_filter file dir="$dir/D"

names=$(ctl '{"command":"origins"}' | jq -c '[.origins[].name] | sort')
[[ $names == '["a.img","b.img"]' ]] || fail "origins: $names ($(grep -i 'connect to' "$server_log"))"
a_uri=$(ctl '{"command":"origins"}' | jq -r '.origins[] | select(.name == "a.img") | .uri')
[[ $a_uri == *"my%20disks/nbd.sock"* ]] || fail "the URI of a.img names another socket: $a_uri"
qemu-io -f raw -c 'write -P 0xa1 0 64K' "$a_uri" >/dev/null || fail "qemu-io could not write through $a_uri"
file_holds "$dir/D/a.img" 0 64K 0xa1 || fail "the write through $a_uri did not reach a.img"
[[ $(ctl '{"command":"cbt-map","origin":"a.img"}' | jq -c .ranges) == '[{"length":65536,"offset":0}]' ]] ||
  fail "the write was not tracked"
pass "sockets in directories with spaces: exports listed, URIs that work, writes tracked"
stop_server TERM
