#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-wrong-socket.sh — each side of nbdsnap recognises the other protocol and says which socket to give:
# --control pointed at the NBD socket (whose server greets with NBDMAGIC at once), and `backup --image` with a
# URI whose socket is the control socket (which never greets). Both end within a few seconds with exit status 2
# and a message naming the path and the way out, with the default --timeout.
# Usage: test-cli-wrong-socket.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

truncate -s 16M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img"

run_cli_within 20 2 --control "$sock" origins
expect_err "$sock: this is an NBD socket, not a control socket"
expect_err "give --control the control socket \\(nbdsnapd --control PATH"
((elapsed_ms < 5000)) || fail "--control at the NBD socket took $elapsed_ms ms"
pass "--control at the NBD socket: exit 2 in $elapsed_ms ms: $err"

run_cli_within 20 2 backup --image "nbd+unix:///disk?socket=$NBDSNAP_CONTROL" --to "$dir/backup.img"
expect_err "$NBDSNAP_CONTROL: this is an nbdsnap control socket, not an NBD socket"
expect_err "give --image"
((elapsed_ms < 5000)) || fail "backup --image at the control socket took $elapsed_ms ms"
[[ ! -e $dir/backup.img ]] || fail "a backup file was created"
pass "backup --image at the control socket: exit 2 in $elapsed_ms ms: $err"

# Under --json both are the same error object: wrong_socket, EPROTO (as the control side's library says).
run_cli_within 20 2 --json --control "$sock" origins
[[ $(jq_out .error.code) == wrong_socket && $(jq_out .error.errno) == 71 ]] || fail "--json --control: $out"
run_cli_within 20 2 --json backup --image "nbd+unix:///disk?socket=$NBDSNAP_CONTROL" --to "$dir/backup.img"
[[ $(jq_out .error.code) == wrong_socket && $(jq_out .error.errno) == 71 ]] || fail "--json --image: $out"
pass "--json: both wrong sockets are wrong_socket (errno 71)"

# The right sockets still work (nothing above disturbed the server).
run_cli 0 origins
run_cli 0 snapshot create s --origin disk --storage "$dir/s.diff:16M"
run_cli 0 snapshot take s
run_cli_within 60 0 backup --image "$(uri disk@s)" --to "$dir/backup.img"
pass "the right sockets work"
