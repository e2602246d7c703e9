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
import struct
import sys

from nbd_raw import (CMD_WRITE, OPT_GO, OPT_LIST, REP_ACK, go_data, option_bytes, read_option_reply, recv_exact,
                     request_bytes, settled_queue)
import nbd_raw

SOCK, EXPORT, FIFO = sys.argv[1:4]


def connect():
    s = nbd_raw.connect(SOCK)
    nbd_raw.greet(s)
    return s


def list_option():
    return option_bytes(OPT_LIST)


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
    s.sendall(list_option() * count + option_bytes(OPT_GO, go_data(EXPORT)))
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
            while read_option_reply(s)[1] != REP_ACK:
                pass
        while True:
            _, reply_type, _ = read_option_reply(s)
            if reply_type == REP_ACK:
                break
            if reply_type & 0x80000000:
                print("go refused", flush=True)
                return
    except (EOFError, ConnectionResetError):
        print("closed during handshake", flush=True)
        return
    s.sendall(request_bytes(CMD_WRITE, 1, 0, 4096) + b"\x99" * 4096)
    try:
        _, error, _ = nbd_raw.read_simple_reply(s)
    except (EOFError, ConnectionResetError):
        print("closed before the write reply", flush=True)
        return
    print("write succeeded" if error == 0 else f"write failed: {error}", flush=True)


if __name__ == "__main__":
    main()
