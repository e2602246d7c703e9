#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-remote-control.sh — nbdsnapd's remote control listener (TLS only, roles per identity) used by the
# CLI over 127.0.0.1: create, take, backup over nbds:// and destroy as an operator (PSK), an admin by client
# certificate (also through the Python package, whose PSK is refused with the reason), a read-only identity
# refused a take with the role it needs, an identity without a role and a client without TLS refused; remote
# storage only as new files in --remote-storage-dir (an existing file elsewhere is refused and left as it was); the
# Unix control socket is mode 0600 (0660 with --control-group).
# Usage: test-cli-remote-control.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
tls_credentials=$(dirname "$0")/../tls-credentials.sh
"$tls_credentials" x509 "$dir/pki" admin1 || exit $?
"$tls_credentials" psk "$dir/keys.psk" agent1 reader nobody
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
nbd_port=$(port)
control_port=$(port)

disk=$dir/disk.img
truncate -s 32M "$disk"
start_nbdsnapd --origin "disk=$disk" --listen "tcp:127.0.0.1:$nbd_port" --tls on --tls-psk "$dir/keys.psk" \
  --tls-certificates "$dir/pki" --control-listen "tcp:127.0.0.1:$control_port" \
  --control-role 'operator psk:agent1' --control-role 'read-only psk:reader' \
  --control-role 'admin dn:CN=admin1,O=nbdsnap test' --remote-storage-dir "$dir" --log-level debug
[[ $(stat -c %a "$NBDSNAP_CONTROL") == 600 ]] || fail "the Unix control socket is not mode 0600"
write 0x42 0 4M disk
psk=(--tls-psk "$dir/keys.psk")
remote=tls://agent1@127.0.0.1:$control_port

mkdir "$dir/elsewhere"
echo "precious data" >"$dir/elsewhere/victim.txt"
run_cli 1 --connect "$remote" "${psk[@]}" snapshot create s0 --origin disk --storage "$dir/elsewhere/victim.txt:1M"
expect_err "remote clients may name only new files directly in $dir"
[[ $(cat "$dir/elsewhere/victim.txt") == "precious data" ]] || fail "a refused storage file was changed"
run_cli 1 --connect "$remote" "${psk[@]}" snapshot create s0 --origin disk --storage "$dir/pki/ca-cert.pem:1M"
expect_err "remote clients may name only new files"
run_cli 0 --connect "$remote" "${psk[@]}" snapshot create s1 --origin disk --storage "$dir/s1.diff:32M"
run_cli 0 --connect "$remote" "${psk[@]}" snapshot take s1
cp --sparse=always "$disk" "$dir/reference.img"
write 0x43 0 1M disk  # after the take
# The backup's control requests go over TLS too (NBDSNAP_CONTROL), its NBD reads over nbds://.
image="nbds://agent1@127.0.0.1:$nbd_port/disk@s1?tls-psk-file=$dir/keys.psk"
NBDSNAP_CONTROL=$remote run_cli 0 "${psk[@]}" --json backup --image "$image" --to "$dir/backup.img"
cmp "$dir/backup.img" "$dir/reference.img" || fail "the backup over TLS differs from the take-time copy"
pass "create, take and backup over TLS (PSK operator)"

run_cli 1 --connect "tls://reader@127.0.0.1:$control_port" "${psk[@]}" snapshot take s1
expect_err "needs the operator role; psk:reader has read-only"
run_cli 0 --connect "tls://reader@127.0.0.1:$control_port" "${psk[@]}" snapshot info s1
run_cli 1 --connect "tls://nobody@127.0.0.1:$control_port" "${psk[@]}" origins
expect_err "psk:nobody has no control role"
run_cli 1 --connect "$remote" "${psk[@]}" origin detach disk
expect_err "needs the admin role"
grep -q "remote control: refused psk:reader" "$server_log" || fail "the log does not name the refused identity"
pass "a read-only identity is refused a take, an identity without a role everything"

# An admin by client certificate (the host name is checked against the server's certificate).
run_cli 0 --connect "tls://localhost:$control_port" --tls-certificates "$dir/pki" --json origins
[[ $(jq_out '.origins[0].name') == disk ]] || fail "origins over X.509: $out"
# The Python package over the same listener: X.509 through Python's ssl module; PSK refused with the reason.
PYTHONPATH=$(dirname "$0")/../../python timeout 30 /usr/bin/python3 -B - "$control_port" "$dir/pki" "$dir/keys.psk" <<'PY' ||
import sys, nbdsnap
port, pki, psk = sys.argv[1:]
with nbdsnap.Client(f"tls://localhost:{port}", timeout=10, tls_certificates=pki) as ctl:
    assert [o["name"] for o in ctl.origins()] == ["disk"], ctl.origins()
    assert ctl.snapshot_info("s1")["name"] == "s1"
try:
    nbdsnap.Client(f"tls://agent1@127.0.0.1:{port}", tls_psk=psk)
    sys.exit("PSK did not raise")
except nbdsnap.Error as e:
    assert e.code == "not_supported" and "TLS-PSK" in e.message, e
PY
  fail "the Python package over TLS (X.509)"
run_cli 0 --connect "tls://localhost:$control_port" --tls-certificates "$dir/pki" snapshot destroy s1
# A client without TLS gets nothing: the server waits for a TLS handshake and ends the connection.
reply=$(timeout 15 /usr/bin/python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=12)
s.sendall(b"{\"command\":\"origins\"}\n")
data = b""
while True:
    try:
        chunk = s.recv(4096)
    except ConnectionResetError:
        break
    if not chunk:
        break
    data += chunk
print(repr(data))' "$control_port") || fail "a plain client to the TLS listener was not disconnected"
[[ $reply != *disk* ]] || fail "the TLS listener answered a plain client: $reply"
run_cli 2 --connect "tls://localhost:$control_port" --tls-certificates "$dir/nowhere" origins
expect_err "nowhere/ca-cert.pem does not exist"
run_cli 2 --connect "tls://localhost:$control_port" origins
expect_err "needs --tls-certificates DIR or --tls-psk FILE"
pass "X.509 admin; plain and credential-less clients refused"
stop_server

# --control-group: the socket belongs to the group, mode 0660.
start_nbdsnapd --origin "disk=$disk" --control-group "$(id -gn)"
[[ $(stat -c %a "$NBDSNAP_CONTROL") == 660 && $(stat -c %G "$NBDSNAP_CONTROL") == "$(id -gn)" ]] ||
  fail "--control-group: $(stat -c '%a %G' "$NBDSNAP_CONTROL")"
stop_server
pass "--control-group"
