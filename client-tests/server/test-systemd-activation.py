#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""test-systemd-activation.py — nbdsnapd started as systemd starts nbdsnapd.socket's service: the NBD and control
sockets bound by this launcher and passed as descriptors 3 and 4 (LISTEN_FDS, LISTEN_PID of the exec'd process,
LISTEN_FDNAMES=nbd:control), and a NOTIFY_SOCKET datagram socket of the test's own.

Checks: READY=1 once it serves; NBD (libnbd) and control through the passed sockets, the configured ones never
created; export URIs name the passed socket; SIGHUP gives RELOADING=1 then READY=1; SIGTERM gives STOPPING=1 and
exit 0; the passed sockets are left listening (not shut down, not unlinked), so a second start on the same
descriptors, as systemd does after a restart, serves again.

Usage: test-systemd-activation.py PATH-TO-nbdsnapd
"""
import json
import os
import signal
import socket
import sys
import tempfile
import time

import nbd

NBDSNAPD = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="nbdsnapd-systemd.")
NBD_PATH = f"{TMP}/nbd.sock"
CONTROL_PATH = f"{TMP}/control.sock"
NOTIFY_PATH = f"{TMP}/notify.sock"
LOG = f"{TMP}/nbdsnapd.log"
children = []


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    if os.path.exists(LOG):
        print("---- nbdsnapd log ----\n" + open(LOG).read()[-4000:], file=sys.stderr)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    sys.exit(1)


def listening_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    return s


def start(nbd_sock, control_sock):
    """Forks and execs nbdsnapd with the sockets as descriptors 3 and 4, as systemd does."""
    pid = os.fork()
    if pid == 0:
        try:
            high = [os.dup(nbd_sock.fileno()), os.dup(control_sock.fileno())]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)
            log = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(log, 2)
            os.dup2(log, 1)
            env = dict(os.environ, LISTEN_FDS="2", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="nbd:control",
                       NOTIFY_SOCKET=NOTIFY_PATH)
            os.execve(NBDSNAPD, [NBDSNAPD, "--listen", f"unix:{TMP}/configured-nbd.sock",
                                 "--control", f"{TMP}/configured-control.sock", "--state-dir", f"{TMP}/state",
                                 "--origin", f"d={TMP}/d.raw", "--threads", "2"], env)
        finally:
            os._exit(127)
    children.append(pid)
    return pid


def expect_notify(notify, wanted, timeout=10.0):
    """Reads notify datagrams until one holds the line `wanted`; returns every state seen meanwhile."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        notify.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            message = notify.recv(4096).decode()
        except socket.timeout:
            break
        seen += message.split("\n")
        if wanted in message.split("\n"):
            return seen
    fail(f"no {wanted} on NOTIFY_SOCKET within {timeout} s (got {seen})")


def control(request):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(CONTROL_PATH)
        s.sendall((json.dumps(request) + "\n").encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    return json.loads(reply)


def wait_exit(pid, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.remove(pid)
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    fail(f"nbdsnapd did not exit within {timeout} s")


def serve_and_check(pid, notify, round_number):
    expect_notify(notify, "READY=1")
    pattern = bytes([0x40 + round_number]) * 65536
    h = nbd.NBD()
    h.connect_uri(f"nbd+unix:///d?socket={NBD_PATH}")
    h.pwrite(pattern, 1 << 20)
    if h.pread(65536, 1 << 20) != pattern:
        fail("NBD read through the passed socket returned other bytes")
    h.shutdown()
    version = control({"command": "version"})
    if not version.get("ok") or version.get("front_end") != "nbdsnapd":
        fail(f"control through the passed socket: {version}")
    origins = control({"command": "origins"})
    uri = origins["origins"][0]["uri"]
    if f"socket={NBD_PATH}" not in uri:
        fail(f"export URI does not name the passed socket: {uri}")
    for configured in ("configured-nbd.sock", "configured-control.sock"):
        if os.path.exists(f"{TMP}/{configured}"):
            fail(f"socket-activated nbdsnapd also bound the configured {configured}")

    os.kill(pid, signal.SIGHUP)
    seen = expect_notify(notify, "READY=1")
    if "RELOADING=1" not in seen:
        fail(f"SIGHUP: READY=1 without RELOADING=1 before it ({seen})")
    os.kill(pid, signal.SIGTERM)
    expect_notify(notify, "STOPPING=1")
    status = wait_exit(pid)
    if status != 0:
        fail(f"nbdsnapd exited with {status} after SIGTERM")
    for path in (NBD_PATH, CONTROL_PATH):
        if not os.path.exists(path):
            fail(f"nbdsnapd removed {path}, which belongs to systemd")


def main():
    with open(f"{TMP}/d.raw", "wb") as f:
        f.truncate(64 << 20)
    nbd_sock = listening_unix(NBD_PATH)
    control_sock = listening_unix(CONTROL_PATH)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(NOTIFY_PATH)
    for round_number in (1, 2):  # the second start on the same descriptors: systemd restarting the service
        serve_and_check(start(nbd_sock, control_sock), notify, round_number)
    print("PASS: socket activation and sd_notify")


try:
    main()
finally:
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    import shutil
    shutil.rmtree(TMP, ignore_errors=True)
