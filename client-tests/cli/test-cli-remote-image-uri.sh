#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-remote-image-uri.sh — the image URI a remote control client is given is one it can open from its own
# machine (issue 17): nbds://HOST:PORT/EXPORT on nbdsnapd's TCP listener, never the nbds+unix:// URI of a
# socket path on the server's machine (which the local control socket still reports); with no TCP listener,
# or one on every address, no URI but a hint saying why and what to use. nbdinfo opens the URI given.
# Usage: test-cli-remote-image-uri.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
requires nbdinfo --version
tls_credentials=$(dirname "$0")/../tls-credentials.sh
"$tls_credentials" psk "$dir/keys.psk" agent1 || exit $?
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
nbd_port=$(port)
control_port=$(port)
truncate -s 4M "$dir/disk.img"
serve() {  # serve [LISTEN...]: nbdsnapd with remote control, NBD on $sock and the listeners given
  local listen=()
  for address in "$@"; do listen+=(--listen "$address"); done
  start_nbdsnapd --origin "disk=$dir/disk.img" "${listen[@]}" --tls require --tls-psk "$dir/keys.psk" \
    --control-listen "tcp:127.0.0.1:$control_port" --control-role 'operator psk:agent1' --remote-storage-dir "$dir"
  for _ in $(seq 100); do grep "remote control (TLS) on" "$server_log" >/dev/null && break; sleep 0.1; done
}
remote=(--connect "tls://agent1@127.0.0.1:$control_port" --tls-psk "$dir/keys.psk")

serve "tcp:127.0.0.1:$nbd_port"
run_cli 0 "${remote[@]}" snapshot create s1 --origin disk --storage "$dir/s1.diff:16M"
run_cli 0 "${remote[@]}" snapshot take s1
expect_out "nbds://127\.0\.0\.1:$nbd_port/disk@s1"
! grep -Eq "nbds\+unix|socket=" <<<"$out" || fail "a remote take printed a Unix socket URI: $out"
run_cli 0 "${remote[@]}" --json snapshot info s1
image=$(jq_out '.snapshot.images[0].uri')
[[ $image == "nbds://127.0.0.1:$nbd_port/disk@s1" ]] || fail "the remote reply's image URI is $image"
timeout 30 nbdinfo --size "nbds://agent1@127.0.0.1:$nbd_port/disk@s1?tls-psk-file=$dir/keys.psk" >/dev/null ||
  fail "the URI given to the remote client does not open"
run_cli 0 --json snapshot info s1  # the local control socket keeps the first listener's Unix URI
[[ $(jq_out '.snapshot.images[0].uri') == "nbds+unix:///disk@s1?socket=$sock" ]] || fail "local URI: $out"
run_cli 0 "${remote[@]}" snapshot destroy s1
stop_server
pass "a remote take prints the nbds:// URI of the TCP listener; the local socket keeps its Unix URI"

serve
run_cli 0 "${remote[@]}" snapshot create s1 --origin disk --storage "$dir/s2.diff:16M"
run_cli 0 "${remote[@]}" snapshot take s1
expect_out "no URI for disk@s1: nbdsnapd serves NBD on Unix sockets only, which another machine cannot open"
! grep -Eq "nbds\+unix|socket=" <<<"$out" || fail "a remote take printed a Unix socket URI: $out"
run_cli 0 "${remote[@]}" snapshot destroy s1
stop_server

serve "tcp:0.0.0.0:$nbd_port"
run_cli 0 "${remote[@]}" snapshot create s1 --origin disk --storage "$dir/s3.diff:16M"
run_cli 0 "${remote[@]}" snapshot take s1
expect_out "no URI for disk@s1: open nbds://SERVER:$nbd_port/disk@s1, SERVER being this server's name or address"
run_cli 0 "${remote[@]}" snapshot destroy s1
stop_server

# Every IPv6 address: the hint gives the listener back as --listen takes it, in brackets.
if "$PY" -c 'import socket; socket.socket(socket.AF_INET6).bind(("::", 0))' 2>/dev/null; then
  serve "tcp:[::]:$nbd_port"
  run_cli 0 "${remote[@]}" snapshot create s1 --origin disk --storage "$dir/s4.diff:16M"
  run_cli 0 "${remote[@]}" snapshot take s1
  expect_out "listens on every address: --listen tcp:\[::\]:$nbd_port\)"
  run_cli 0 "${remote[@]}" snapshot destroy s1
  stop_server
fi
pass "no TCP listener, or one on every address: no URI, a hint instead"
