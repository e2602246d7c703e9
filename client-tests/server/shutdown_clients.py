#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""shutdown_clients.py — clients that try to hold nbdsnapd up while it stops on SIGTERM.

Usage: shutdown_clients.py ROLE ARGS...
  control-waiter CONTROL-SOCKET READY-FILE
      Sends two events-wait requests with a 60 s timeout in one write (the second is already received when
      the first returns), creates READY-FILE, then reads replies until the server closes the connection.
  control-latecomer CONTROL-SOCKET
      From now until the control socket refuses connections (at most 10 s), connects again and again and
      sends an events-wait with a 60 s timeout: some of them arrive after SIGTERM.
  idle-handshake NBD-SOCKET
      Connects, reads the greeting and says nothing more for at most 60 s: a client stuck mid-handshake.
  opt-mode NBD-SOCKET PID
      libnbd in opt mode, two connections: sends SIGTERM to PID, then asks for the export list on one and
      for GO on the other; prints what libnbd reports ("opt_list: ...", "opt_go: ...") and the server's
      error messages libnbd logged ("debug: ...").
  not-reading NBD-SOCKET EXPORT READY-FILE
      Negotiates EXPORT, sends 256 READs of 1 MiB, never reads a reply, creates READY-FILE, and holds the
      socket until killed (at most 60 s).
Every wait has a bound; the shell tests measure how long nbdsnapd takes to stop.
"""
import json
import os
import signal
import socket
import sys
import time

from nbd_raw import CMD_READ, OPT_EXPORT_NAME, greet, recv_exact, request_bytes, send_option

EVENTS_WAIT = json.dumps({"command": "events-wait", "after": 1 << 40, "timeout_ms": 60000}).encode() + b"\n"


def control_waiter(path, ready):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(90)
        s.connect(path)
        s.sendall(EVENTS_WAIT + EVENTS_WAIT)
        open(ready, "w").close()
        replies = 0
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                replies += data.count(b"\n")
        except OSError:
            pass
        print(f"control-waiter: {replies} replies, then the server closed the connection")


def control_latecomer(path):
    deadline = time.monotonic() + 10
    sent = 0
    held = []
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            s.sendall(EVENTS_WAIT)
        except OSError:
            s.close()
            break
        held.append(s)  # kept open: its events-wait stays pending on the server
        sent += 1
        time.sleep(0.005)
    for s in held:
        s.close()
    print(f"control-latecomer: {sent} events-wait requests sent")


def idle_handshake(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(path)
        recv_exact(s, 18)
        try:
            s.recv(1)  # end of file (or an error) once the server gives up on us
        except OSError:
            pass


def opt_mode(path, pid):
    import nbd

    handles, server_messages = [], []
    for _ in range(2):
        h = nbd.NBD()
        h.set_opt_mode(True)
        h.set_debug_callback(lambda context, message: server_messages.append(message)
                             if "server error message" in message else None)
        h.set_debug(True)  # libnbd logs the message of an option error only as debug output
        h.connect_unix(path)
        handles.append(h)
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.3)  # the server has begun its shutdown
    # One option on each connection: the server answers it, then closes (the client must disconnect anyway).
    for name, call in (("opt_list", lambda: handles[0].opt_list(lambda name, description: 0)),
                       ("opt_go", handles[1].opt_go)):
        try:
            call()
            print(f"{name}: succeeded")
        except nbd.Error as error:
            print(f"{name}: {error.string} (errno {error.errno})")
    for message in server_messages:
        print(f"debug: {message}")


def not_reading(path, export, ready):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    greet(s)
    send_option(s, OPT_EXPORT_NAME, export.encode())
    recv_exact(s, 10)  # size and transmission flags
    s.setblocking(False)
    requests = b"".join(request_bytes(CMD_READ, i, (i % 64) << 20, 1 << 20) for i in range(256))
    sent = 0
    deadline = time.monotonic() + 10
    while sent < len(requests) and time.monotonic() < deadline:
        try:
            sent += s.send(requests[sent:])
        except BlockingIOError:
            time.sleep(0.01)  # the server stopped reading: its in-flight limit is reached
    open(ready, "w").close()
    time.sleep(60)  # killed by the test long before


def main():
    role, args = sys.argv[1], sys.argv[2:]
    if role == "control-waiter":
        control_waiter(*args)
    elif role == "control-latecomer":
        control_latecomer(*args)
    elif role == "idle-handshake":
        idle_handshake(*args)
    elif role == "opt-mode":
        opt_mode(args[0], int(args[1]))
    elif role == "not-reading":
        not_reading(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
