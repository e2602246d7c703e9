#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-tls.sh — NBD over TLS with real clients (nbdinfo, nbdcopy, qemu-img, qemu-io), X.509 and PSK, on Unix
# and on 127.0.0.1: an image read over TLS equals the same read in clear; under --tls require a plain client
# is refused and `nbdinfo --list` reveals nothing; a wrong PSK and a certificate of another CA are refused;
# SIGHUP loads a new CA without a restart.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"
tls_credentials=$here/../tls-credentials.sh
"$tls_credentials" x509 "$dir/pki" agent1 || exit $?
"$tls_credentials" x509 "$dir/other" agent1
"$tls_credentials" psk "$dir/keys.psk" agent1
"$tls_credentials" psk "$dir/wrong.psk" agent1  # same user, another key
mkdir "$dir/qemu-psk" && cp "$dir/keys.psk" "$dir/qemu-psk/keys.psk"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
qemu_psk="--object tls-creds-psk,id=t0,dir=$dir/qemu-psk,username=agent1,endpoint=client"
qemu_x509="--object tls-creds-x509,id=t0,dir=$dir/pki,endpoint=client"
psk_uri() { echo "nbds+unix://agent1@/$1?socket=$sock&tls-psk-file=$dir/${2:-keys}.psk"; }
x509_uri() { echo "nbds://127.0.0.1:$port/$1?tls-certificates=$dir/${2:-pki}"; }

# --- --tls on: TLS and clear on the same server; the image read both ways is the same. ---
truncate -s 32M "$dir/d.raw"
start_nbdsnapd --origin "d=$dir/d.raw" --listen "tcp:127.0.0.1:$port" --tls on --tls-psk "$dir/keys.psk" \
  --tls-certificates "$dir/pki" --tls-verify-peer --log-level debug
qemu-io $qemu_psk --image-opts -c 'write -P 0x5a 0 4M' -c 'write -P 0x33 16M 1M' \
  "driver=nbd,server.type=unix,server.path=$sock,export=d,tls-creds=t0" >/dev/null || fail "qemu-io write over TLS (PSK)"
snapshot s1 d
qemu-io -f raw -c 'write -P 0x77 0 8M' "$(uri d)" >/dev/null  # after the take: the image must not see it
nbdcopy "$(psk_uri d@s1)" "$dir/tls.img" || fail "nbdcopy over TLS (PSK)"
nbdcopy "$(uri d@s1)" "$dir/clear.img" || fail "nbdcopy in clear"
cmp "$dir/tls.img" "$dir/clear.img" || fail "the image read over TLS differs from the read in clear"
qemu-io -f raw -r -c 'read -P 0x5a 0 4M' -c 'read -P 0x33 16M 1M' "$dir/tls.img" >/dev/null || fail "image content"
nbdinfo "$(x509_uri d@s1)" | grep 'with TLS' >/dev/null || fail "nbdinfo over TLS (X.509, TCP)"
qemu-img compare $qemu_x509 --image-opts \
  "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,export=d@s1,tls-creds=t0" \
  "driver=file,filename=$dir/clear.img" >/dev/null || fail "qemu-img over TLS (X.509, TCP) differs"
qemu-img info $qemu_psk --image-opts "driver=nbd,server.type=unix,server.path=$sock,export=d@s1,tls-creds=t0" \
  | grep 'virtual size: 32 MiB' >/dev/null || fail "qemu-img info over TLS (PSK)"
# Origins are not served over TCP unless --tcp-origins: the image is, the origin is refused with a reason.
nbdinfo "$(x509_uri d)" >/dev/null 2>&1 && fail "origin served over TCP without --tcp-origins"
grep -q "origin 'd' is not served over TCP" "$server_log" || fail "no reason logged for the origin refused over TCP"
# Refusals: a wrong PSK, a client certificate of another CA (--tls-verify-peer).
nbdinfo "$(psk_uri d@s1 wrong)" >/dev/null 2>&1 && fail "a wrong PSK was accepted"
cp "$dir/pki/ca-cert.pem" "$dir/other/ca-cert.pem"  # the client trusts the server; the server must refuse it
nbdinfo "$(x509_uri d@s1 other)" >/dev/null 2>&1 && fail "a client certificate of another CA was accepted"
grep -q 'refused: TLS handshake: ' "$server_log" || fail "refused handshakes are not logged"
ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null
stop_server

# --- --tls require: nothing in clear; allow rules by identity; SIGHUP reload. ---
"$tls_credentials" psk "$dir/keys.psk" agent2
cat >"$dir/nbdsnapd.conf" <<CONF
tls = require
tls-psk = $dir/keys.psk
tls-certificates = $dir/pki
allow = d psk:agent1
allow = d@* psk:agent2
allow = * dn:CN=agent1,O=nbdsnap test
CONF
start_nbdsnapd --origin "d=$dir/d.raw" --listen "tcp:127.0.0.1:$port" --config "$dir/nbdsnapd.conf" --tls-verify-peer \
  --log-level debug
snapshot s2 d
if out=$(nbdinfo --list "$(uri '')" 2>&1); then fail "a plain --list succeeded: $out"; fi
[[ $out != *'"d'* && $out != *'d@s2'* ]] || fail "a plain --list revealed exports: $out"
nbdinfo "$(uri d@s2)" >/dev/null 2>&1 && fail "a plain client opened an image under --tls require"
nbdinfo "$(psk_uri d)" >/dev/null || fail "psk:agent1 may open d"
agent2="nbds+unix://agent2@/d?socket=$sock&tls-psk-file=$dir/keys.psk"
nbdinfo "$agent2" >/dev/null 2>&1 && fail "psk:agent2 opened d against the allow rules"
grep -q "refused: psk:agent2 may not open export 'd'" "$server_log" || fail "the log does not name who was refused"
nbdinfo "${agent2/\/d?//d@s2?}" >/dev/null || fail "psk:agent2 may open d@s2"
listed=$(nbdinfo --list "nbds+unix://agent2@/?socket=$sock&tls-psk-file=$dir/keys.psk" | grep '^export=')
[[ $listed == 'export="d@s2":' ]] || fail "psk:agent2's list shows more than it may open: $listed"
nbdinfo "$(x509_uri d@s2)" >/dev/null || fail "the X.509 client may open d@s2"
# SIGHUP: a new CA. Clients of the old one are refused from now on, the new one's are served.
cp -r "$dir/pki" "$dir/old"
nbdinfo "$(x509_uri d@s2 old)" >/dev/null || fail "the old CA's client refused before the reload"
"$tls_credentials" x509 "$dir/new" agent1
cp "$dir/new/"{ca-cert,server-cert,server-key}.pem "$dir/pki/"
kill -HUP "$server_pid"
for ((i = 0; i < 50; i++)); do grep -q 'TLS credentials reloaded' "$server_log" && break; sleep 0.1; done
grep -q 'TLS credentials reloaded' "$server_log" || fail "SIGHUP did not reload the credentials"
nbdinfo "$(x509_uri d@s2 old)" >/dev/null 2>&1 && fail "the old CA's client still served after the reload"
nbdinfo "$(x509_uri d@s2 new)" >/dev/null || fail "the new CA's client refused after reload"
kill -0 "$server_pid" || fail "SIGHUP stopped nbdsnapd"

# The PSK keys a handshake uses are the ones the last successful load checked: a reload that fails keeps them
# (agent2 removed from the file together with a bad line is still served), one that works replaces them, and
# CRLF line ends (a file edited on Windows) are read as the check reads them.
cp "$dir/keys.psk" "$dir/keys.psk.good"
cp "$dir/keys.psk" "$dir/agent-keys.psk"  # the clients keep reading their keys from here
{ grep -v '^agent2:' "$dir/keys.psk.good"; echo "not a key line"; } >"$dir/keys.psk"
kill -HUP "$server_pid"
for ((i = 0; i < 50; i++)); do grep -q 'TLS credentials not reloaded' "$server_log" && break; sleep 0.1; done
grep -q 'TLS credentials not reloaded' "$server_log" || fail "a PSK file with a bad line was not refused at reload"
agent2_s2="nbds+unix://agent2@/d@s2?socket=$sock&tls-psk-file=$dir/keys.psk.good"
nbdinfo "$agent2_s2" >/dev/null || fail "after a failed reload the previous PSK keys are not in use"
sed 's/$/\r/' "$dir/keys.psk.good" | grep -v '^agent2:' >"$dir/keys.psk"
reloads=$(grep -c 'TLS credentials reloaded' "$server_log")
kill -HUP "$server_pid"
for ((i = 0; i < 50; i++)); do (($(grep -c 'TLS credentials reloaded' "$server_log") > reloads)) && break; sleep 0.1; done
(($(grep -c 'TLS credentials reloaded' "$server_log") > reloads)) || fail "a PSK file with CRLF line ends was not reloaded"
nbdinfo "$(psk_uri d agent-keys)" >/dev/null || fail "psk:agent1 refused with the key read from a CRLF file"
nbdinfo "$agent2_s2" >/dev/null 2>&1 && fail "psk:agent2 still served after a reload removed its key"
ctl '{"command":"snapshot-destroy","name":"s2"}' >/dev/null
stop_server
((server_status == 0)) || fail "nbdsnapd exit status $server_status"
echo "ok"
