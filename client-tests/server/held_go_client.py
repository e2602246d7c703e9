#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""held_go_client.py — an NBD client whose NBD_OPT_GO reply waits in a full socket buffer.

Usage: held_go_client.py SOCKET EXPORT FIFO
Sends NBD_OPT_LIST options and then NBD_OPT_GO(EXPORT) without reading any reply, so that the server has
resolved EXPORT but finds no room in the socket for the GO reply. Prints "sent", waits until a line arrives on
FIFO, then reads every reply and, if the GO succeeded, writes 4 KiB of 0x99 at offset 0. Prints what happened:
"closed during handshake", "go refused", "write failed: ERRNO" or "write succeeded".

How many LISTs: a Unix socket takes writes while the bytes it holds (each write counted with its kernel
overhead) are below its send buffer, so the server's writes stop after a fixed number of LIST replies. A probe
connection counts them; the real one then sends exactly that many, and the next write, the GO reply, waits.
"""
import fcntl
import socket
import struct
import sys
import termios
import time

SOCK, EXPORT, FIFO = sys.argv[1:4]
OPT_LIST, OPT_GO = 3, 7
REP_ACK = 1
REQUEST_MAGIC, CMD_WRITE = 0x25609513, 1


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_reply(s):
    _, option, reply_type, length = struct.unpack(">QIII", recv_exact(s, 20))
    return option, reply_type, recv_exact(s, length)


def queued_bytes(s):
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def settled_queue(s):
    """Bytes waiting in the socket once the server stopped writing."""
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 0.3:
        time.sleep(0.02)
        now = queued_bytes(s)
        if now != last:
            last, stable_since = now, time.monotonic()
    return last


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(SOCK)
    recv_exact(s, 18)  # NBDMAGIC, IHAVEOPT, handshake flags
    s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
    return s


def list_option():
    return b"IHAVEOPT" + struct.pack(">II", OPT_LIST, 0)


def list_replies_that_fit():
    """How many LIST replies the server writes before a write has to wait (and the bytes of one)."""
    s = connect()
    s.sendall(list_option())
    one = b""
    while True:
        header = recv_exact(s, 20)
        one += header + recv_exact(s, struct.unpack(">QIII", header)[3])
        if struct.unpack(">QIII", header)[2] == REP_ACK:
            break
    s.sendall(list_option() * 2000)
    count = settled_queue(s) // len(one)
    s.close()
    return count, len(one)


def main():
    count, size = list_replies_that_fit()
    s = connect()
    name = EXPORT.encode()
    go = b"IHAVEOPT" + struct.pack(">II", OPT_GO, 4 + len(name) + 2) + struct.pack(">I", len(name)) + name
    s.sendall(list_option() * count + go + struct.pack(">H", 0))
    held = settled_queue(s)
    if held != count * size:
        print(f"the GO reply was not held ({held} bytes queued, {count} LIST replies of {size})", flush=True)
        sys.exit(2)
    print("sent", flush=True)
    with open(FIFO) as fifo:
        fifo.readline()
    s.settimeout(30)
    try:
        for _ in range(count):
            while read_reply(s)[1] != REP_ACK:
                pass
        while True:
            _, reply_type, _ = read_reply(s)
            if reply_type == REP_ACK:
                break
            if reply_type & 0x80000000:
                print("go refused", flush=True)
                return
    except (EOFError, ConnectionResetError):
        print("closed during handshake", flush=True)
        return
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 1, 0, 4096) + b"\x99" * 4096)
    try:
        _, error, _ = struct.unpack(">IIQ", recv_exact(s, 16))
    except (EOFError, ConnectionResetError):
        print("closed before the write reply", flush=True)
        return
    print("write succeeded" if error == 0 else f"write failed: {error}", flush=True)


if __name__ == "__main__":
    main()
