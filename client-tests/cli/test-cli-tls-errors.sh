#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-tls-errors.sh — what an administrator reads when TLS or remote control goes wrong, on both sides:
# a wrong PSK, an unknown PSK identity, a client certificate of another CA, an expired one, none at all, and a
# server certificate the CLI does not trust, each named in the server log with the peer's HOST:PORT (the first
# of each kind in a minute; the rest counted in a summary line) and in the CLI's error with the file to check (GnuTLS's words only in parentheses); the same on the NBD listener; a
# backup over nbds:// refused by an allow rule shows the server's reason; `events --wait` refused prints nothing
# on stdout; a request line over 1 MiB gets a bad_request error the CLI prints; a failed SIGHUP reload is
# logged once; dn:/san: rules that cannot match without --tls-verify-peer are warned about at start and reload.
# Usage: test-cli-tls-errors.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
tls_credentials=$(dirname "$0")/../tls-credentials.sh
"$tls_credentials" x509 "$dir/pki" agent1 || exit $?
"$tls_credentials" x509 "$dir/other" agent1
cp -r "$dir/other" "$dir/foreign" && cp "$dir/pki/ca-cert.pem" "$dir/foreign/ca-cert.pem"  # trusts the server
mkdir "$dir/nocert" && cp "$dir/pki/ca-cert.pem" "$dir/nocert/"
# A client certificate of the right CA that expired in 2020.
mkdir "$dir/expired" && cp "$dir/pki/ca-cert.pem" "$dir/expired/"
certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$dir/expired/client-key.pem" 2>/dev/null
printf '%s\n' 'cn = agent1' 'organization = nbdsnap test' 'tls_www_client' 'signing_key' \
  'activation_date = "2019-01-01 00:00:00"' 'expiration_date = "2020-01-01 00:00:00"' >"$dir/expired.info"
certtool --generate-certificate --load-privkey "$dir/expired/client-key.pem" --load-ca-certificate "$dir/pki/ca-cert.pem" \
  --load-ca-privkey "$dir/pki/ca-key.pem" --template "$dir/expired.info" --outfile "$dir/expired/client-cert.pem" 2>/dev/null
"$tls_credentials" psk "$dir/keys.psk" agent1 agent2 reader
"$tls_credentials" psk "$dir/wrong.psk" agent1  # same user, another key
"$tls_credentials" psk "$dir/stranger.psk" stranger
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
nbd_port=$(port)
control_port=$(port)
truncate -s 8M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img" --listen "tcp:127.0.0.1:$nbd_port" --tls on \
  --tls-psk "$dir/keys.psk" --tls-certificates "$dir/pki" --tls-verify-peer --allow 'disk@* psk:agent1' --allow 'disk local' \
  --control-listen "tcp:127.0.0.1:$control_port" --control-role 'operator psk:agent1' \
  --control-role 'admin dn:CN=agent1,O=nbdsnap test' --remote-storage-dir "$dir"
log=$server_log
for _ in $(seq 100); do grep -q "remote control (TLS) on" "$log" && break; sleep 0.1; done
at=127.0.0.1:$control_port
peer='refused 127\.0\.0\.1:[0-9]+: TLS handshake: '

# --- The remote control listener: each failure in the log with the peer, in the CLI with what to check. ---
run_cli 4 --connect "tls://agent1@$at" --tls-psk "$dir/wrong.psk" origins
expect_err "tls://agent1@$at: TLS handshake: the server refused the TLS handshake with alert '[^']+': check that the key of user 'agent1' in $dir/wrong.psk is the one the server's --tls-psk file holds"
grep -Eq "remote control: ${peer}the client's PSK does not match the key for user 'agent1' in $dir/keys.psk .*\(GnuTLS: " "$log" ||
  fail "a wrong PSK is not explained in the log"
run_cli 4 --connect "tls://stranger@$at" --tls-psk "$dir/stranger.psk" origins
grep -Eq "remote control: ${peer}the client offered an unknown PSK identity 'stranger': $dir/keys.psk has no key for it" "$log" ||
  fail "an unknown PSK identity is not explained in the log"
run_cli 4 --connect "tls://localhost:$control_port" --tls-certificates "$dir/foreign" origins
expect_err "check that $dir/foreign/client-cert.pem exists, is signed by the CA the server trusts"
grep -Eq "remote control: ${peer}the client sent no certificate signed by $dir/pki/ca-cert.pem \(it has none, or one of another CA" "$log" ||
  fail "a client certificate of another CA is not explained in the log"
run_cli 4 --connect "tls://localhost:$control_port" --tls-certificates "$dir/expired" origins
grep -Eq "remote control: ${peer}the client's certificate has expired \(check its validity dates" "$log" ||
  fail "an expired client certificate is not explained in the log"
run_cli 4 --connect "tls://localhost:$control_port" --tls-certificates "$dir/nocert" origins
# The same kind as the foreign certificate within a minute: counted for the summary, not logged again.
(($(grep -Ec "remote control: ${peer}the client sent no certificate signed by $dir/pki/ca-cert.pem" "$log") == 1)) ||
  fail "a second client without a certificate within a minute was logged in full again"
run_cli 4 --connect "tls://localhost:$control_port" --tls-certificates "$dir/other" origins
expect_err "TLS handshake: the server's certificate is not signed by $dir/other/ca-cert.pem \(GnuTLS: "
! grep -q "An illegal parameter has been received\.$\|Error in the pull function\.$" <<<"$err" || fail "GnuTLS's words alone: $err"
pass "remote control: handshake failures explained on both sides, with the peer's address"

# --- The NBD listener names the peer and the cause too. ---
nbdinfo "nbds://agent1@127.0.0.1:$nbd_port/disk?tls-psk-file=$dir/wrong.psk" >/dev/null 2>&1 && fail "a wrong PSK was accepted"
grep -Eq "from 127\.0\.0\.1:[0-9]+: refused: TLS handshake: the client's PSK does not match the key for user 'agent1'" "$log" ||
  fail "the NBD listener does not explain a wrong PSK"
pass "NBD listener: a wrong PSK explained with the peer's address"

# --- A backup over nbds:// that an allow rule refuses shows the server's reason. ---
remote=(--connect "tls://agent1@$at" --tls-psk "$dir/keys.psk")
run_cli 0 "${remote[@]}" snapshot create s1 --origin disk --storage "$dir/s1.diff:16M"
run_cli 0 "${remote[@]}" snapshot take s1
image="nbds://agent2@127.0.0.1:$nbd_port/disk@s1?tls-psk-file=$dir/keys.psk"
run_cli 4 "${remote[@]}" backup --image "$image" --to "$dir/backup.img"
expect_err "psk:agent2 may not open export 'disk@s1'"
image="nbds://agent1@127.0.0.1:$nbd_port/disk@s1?tls-psk-file=$dir/wrong.psk"
run_cli 4 "${remote[@]}" backup --image "$image" --to "$dir/backup.img"
expect_err "check .*$dir/wrong.psk"
pass "backup over nbds://: the server's refusal and a wrong PSK explained"

# --- events --wait refused: nothing on stdout. ---
run_cli 1 --connect "tls://reader@$at" --tls-psk "$dir/keys.psk" events --wait 1
expect_err "no control role"
[[ -z $out ]] || fail "a refused events --wait printed on stdout: $out"
pass "a refused events --wait prints nothing on stdout"

# --- A request line over 1 MiB: a bad_request error, which the CLI prints. ---
# Nine storage paths of 120,000 bytes each (an argument may not exceed 128 KiB): a 1.08 MB request line.
long=/$(head -c 120000 /dev/zero | tr '\0' 'a')
storage=()
for i in $(seq 9); do storage+=(--storage "$long$i:1M"); done
run_cli 1 snapshot create big --origin disk "${storage[@]}"
expect_err "longer than 1048576 bytes \(1 MiB, the control protocol's limit\).*\(bad_request\)"
run_cli 1 --connect "tls://agent1@$at" --tls-psk "$dir/keys.psk" snapshot create big --origin disk "${storage[@]}"
expect_err "longer than 1048576 bytes \(1 MiB, the control protocol's limit\).*\(bad_request\)"
pass "a request line over 1 MiB gets bad_request (Unix socket and TLS)"

# --- A failed reload is logged once. ---
cp "$dir/keys.psk" "$dir/keys.psk.good"
echo "not a key line" >>"$dir/keys.psk"
kill -HUP "$server_pid"
for _ in $(seq 50); do grep -q 'TLS credentials not reloaded' "$log" && break; sleep 0.1; done
sleep 0.3
(($(grep -c 'TLS credentials not reloaded' "$log") == 1)) || fail "a failed reload is not logged exactly once: $(grep 'not reloaded' "$log")"
cp "$dir/keys.psk.good" "$dir/keys.psk"
run_cli 0 "${remote[@]}" snapshot destroy s1
stop_server
pass "a failed reload is logged once"
grep -E "remote control: refused [0-9]+ connections in the last [0-9]+ s: .*[0-9]+ without a certificate of the CA.*, last from 127\.0\.0\.1:[0-9]+" \
  "$log" >/dev/null || fail "the refusals counted are not summed up at shutdown"
pass "refusals of a kind seen within the minute are counted and summed up"

# --- dn:/san: allow rules without --tls-verify-peer can never match: warned at start and at reload. ---
start_nbdsnapd --log unverified --origin "disk=$dir/disk.img" --listen "tcp:127.0.0.1:$nbd_port" --tls on \
  --tls-certificates "$dir/pki" --allow '* dn:CN=agent1,O=nbdsnap test' --allow 'disk@* san:agent1.test' --allow 'disk local'
log=$server_log  # a log of its own: the warnings counted below are this server's only
for _ in $(seq 50); do grep -q "ready with" "$log" && break; sleep 0.1; done
warning="can never match: no client certificate is asked for \(add --tls-verify-peer\)"
grep -Eq "allow '\* dn:CN=agent1,O=nbdsnap test' $warning" "$log" || fail "no warning for a dn: rule without --tls-verify-peer"
grep -Eq "allow 'disk@\* san:agent1.test' $warning" "$log" || fail "no warning for a san: rule without --tls-verify-peer"
grep -q "allow 'disk local' can never" "$log" && fail "a rule that can match was warned about"
kill -HUP "$server_pid"
for _ in $(seq 50); do (($(grep -Ec "$warning" "$log") == 4)) && break; sleep 0.1; done
(($(grep -Ec "$warning" "$log") == 4)) || fail "the warnings are not repeated at reload"
stop_server
pass "dn:/san: rules without --tls-verify-peer are warned about at start and reload"
