#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-connection-limits.sh — --max-connections refuses clients over the limit with an error they can report
# (qemu-img prints it), and --handshake-timeout disconnects a client that connects and says nothing, while the
# clients already in transmission go on working past the timeout.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 16M "$dir/disk.raw"
start_nbdsnapd --origin "disk=$dir/disk.raw" --max-connections 3 --handshake-timeout 2
/usr/bin/python3 - "$sock" "$(uri disk)" <<'PY' || fail "connection limits"
import socket, subprocess, sys, time
import nbd

sock, uri = sys.argv[1:3]

def nbdinfo():
    return subprocess.run(["nbdinfo", "--size", uri], capture_output=True, text=True)

# Three connections: two libnbd clients in transmission and one that never speaks.
clients = []
for _ in range(2):
    h = nbd.NBD()
    h.connect_uri(uri)
    clients.append(h)
silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
silent.connect(sock)
started = time.monotonic()

# libnbd names the error (NBD_REP_ERR_POLICY); QEMU prints the server's message as well.
refused = nbdinfo()
assert refused.returncode != 0, "a fourth client was served"
assert "server policy prevents" in refused.stderr, refused.stderr
refused = subprocess.run(["qemu-img", "info", uri], capture_output=True, text=True)
assert refused.returncode != 0, "a fourth client was served"
assert "too many connections: this server serves at most 3 clients" in refused.stderr, refused.stderr

# The silent client gets the greeting, then end of file once the handshake timeout expires.
silent.settimeout(60)
received = b""
while chunk := silent.recv(4096):
    received += chunk
assert received.startswith(b"NBDMAGIC"), received
assert time.monotonic() - started >= 1.5, "closed before the handshake timeout"

# Transmission is not subject to the handshake timeout: the libnbd clients still work.
for h in clients:
    h.pwrite(b"x" * 4096, 0)
    assert h.pread(4096, 0) == b"x" * 4096

# A slot is free again (the refused nbdinfo's connection goes away when it exits).
for _ in range(100):
    served = nbdinfo()
    if served.returncode == 0:
        break
    time.sleep(0.1)
assert served.returncode == 0 and served.stdout.strip() == str(16 << 20), served.stderr
for h in clients:
    h.shutdown()
PY
grep -q "no handshake within 2 s" "$server_log" || fail "the handshake timeout was not logged"
grep -q "refused 1 connection(s): 3 are open (--max-connections)" "$server_log" || fail "the refusal was not logged"
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0"

# A refused client that lingers (no handshake timeout here) does not count: once an admitted client leaves,
# the next one is served.
start_nbdsnapd --origin "disk=$dir/disk.raw" --max-connections 2 --handshake-timeout 0
/usr/bin/python3 - "$sock" "$(uri disk)" <<'PY' || fail "a lingering refused client kept a free slot"
import socket, subprocess, sys, time
import nbd

sock, uri = sys.argv[1:3]
first, second = nbd.NBD(), nbd.NBD()
first.connect_uri(uri)
second.connect_uri(uri)
lingering = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # refused, and says nothing
lingering.connect(sock)
assert lingering.recv(8) == b"NBDMAGIC"
second.shutdown()
for _ in range(100):
    served = subprocess.run(["nbdinfo", "--size", uri], capture_output=True, text=True)
    if served.returncode == 0:
        break
    time.sleep(0.1)
assert served.returncode == 0, served.stderr
first.shutdown()
PY
stop_server TERM
((server_status == 0)) || fail "nbdsnapd did not exit 0 with a client in the handshake"
echo PASS
