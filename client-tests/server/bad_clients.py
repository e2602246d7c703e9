#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""bad_clients.py — misbehaving NBD clients against nbdsnapd while a well-behaved libnbd client works.

Usage: bad_clients.py SOCKET ORIGIN IMAGE
Garbage handshakes, garbage requests, oversized reads and writes, unknown options, out-of-range and
read-only requests each get the error (or disconnect) the NBD spec asks for; meanwhile a libnbd client
writes and verifies data and must see no error at all.
"""
import os
import socket
import struct
import sys
import threading

import nbd

SOCK, ORIGIN, IMAGE = sys.argv[1:4]
REQUEST_MAGIC = 0x25609513
EINVAL, EPERM, ENOSPC = 22, 1, 28
CMD_READ, CMD_WRITE = 0, 1


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("server closed the connection")
        data += chunk
    return data


def closed_by_server(s):
    """True when the server has closed its side (reads give end of file)."""
    s.settimeout(30)
    try:
        while s.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(SOCK)
    return s


def send_option(s, option, data=b""):
    s.sendall(b"IHAVEOPT" + struct.pack(">II", option, len(data)) + data)


def read_option_reply(s):
    magic, option, reply_type, length = struct.unpack(">QIII", recv_exact(s, 20))
    assert magic == 0x3E889045565A9, hex(magic)
    return option, reply_type, recv_exact(s, length)


def greet(s):
    hello = recv_exact(s, 18)
    assert hello[:16] == b"NBDMAGICIHAVEOPT", hello
    s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes


def go(s, name):
    data = struct.pack(">I", len(name)) + name.encode() + struct.pack(">H", 0)
    send_option(s, 7, data)
    while True:
        option, reply_type, payload = read_option_reply(s)
        if reply_type == 1:
            return
        assert reply_type == 3, f"GO failed with reply {reply_type:#x}: {payload!r}"


def transmission(name):
    s = connect()
    greet(s)
    go(s, name)
    return s


def request(s, cmd, handle, offset, length, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, cmd, handle, offset, length) + payload)


def simple_reply(s, handle, data_length=0):
    magic, error, got = struct.unpack(">IIQ", recv_exact(s, 16))
    assert magic == 0x67446698 and got == handle, (hex(magic), got, handle)
    data = recv_exact(s, data_length) if error == 0 and data_length else b""
    return error, data


class GoodClient(threading.Thread):
    """Writes and reads back 64 KiB blocks until told to stop; records any failure."""

    def __init__(self):
        super().__init__()
        self.stop = threading.Event()
        self.error = None
        self.rounds = 0

    def run(self):
        h = nbd.NBD()
        try:
            h.connect_uri(f"nbd+unix:///{ORIGIN}?socket={SOCK}")
            while not self.stop.is_set() or self.rounds < 20:
                block = self.rounds % 64
                data = bytes([self.rounds % 251 + 1]) * 65536
                h.pwrite(data, block * 65536)
                if h.pread(65536, block * 65536) != data:
                    raise AssertionError(f"read back other data at block {block}")
                self.rounds += 1
            h.shutdown()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = e


def main():
    good = GoodClient()
    good.start()

    # Garbage instead of client flags and options: dropped.
    s = connect()
    recv_exact(s, 18)
    s.sendall(os.urandom(4096))
    assert closed_by_server(s), "garbage handshake not dropped"

    # An option claiming a gigabyte of data: dropped.
    s = connect()
    greet(s)
    s.sendall(b"IHAVEOPT" + struct.pack(">II", 3, 1 << 30))
    assert closed_by_server(s), "huge option not dropped"

    # An unknown option: NBD_REP_ERR_UNSUP, and the haggling goes on.
    s = connect()
    greet(s)
    send_option(s, 99, b"xyz")
    option, reply_type, _ = read_option_reply(s)
    assert option == 99 and reply_type == 0x80000001, hex(reply_type)
    go(s, ORIGIN)

    # Oversized READ and WRITE: EINVAL, the WRITE's payload is skipped, the connection keeps working.
    request(s, CMD_READ, 1, 0, 64 << 20)
    assert simple_reply(s, 1)[0] == EINVAL
    request(s, CMD_WRITE, 2, 0, 40 << 20, b"\xee" * (40 << 20))
    assert simple_reply(s, 2)[0] == EINVAL
    request(s, CMD_READ, 3, 32 << 20, 512)
    error, data = simple_reply(s, 3, 512)
    assert error == 0 and data != b"\xee" * 512, "oversized write reached the disk"
    # Out of range: ENOSPC for writes, EINVAL for reads.
    request(s, CMD_WRITE, 4, (64 << 20) - 256, 512, b"\1" * 512)
    assert simple_reply(s, 4)[0] == ENOSPC
    request(s, CMD_READ, 5, 1 << 40, 512)
    assert simple_reply(s, 5)[0] == EINVAL
    # An unknown command: EINVAL.
    request(s, 42, 6, 0, 0)
    assert simple_reply(s, 6)[0] == EINVAL
    # A write claiming 3 GiB of payload: dropped rather than read.
    request(s, CMD_WRITE, 7, 0, 3 << 30)
    assert closed_by_server(s), "3 GiB write not dropped"

    # Garbage where a request header belongs: dropped.
    s = transmission(ORIGIN)
    s.sendall(os.urandom(28 * 4))
    assert closed_by_server(s), "garbage request not dropped"

    # Writing to a read-only image: EPERM.
    s = transmission(IMAGE)
    request(s, CMD_WRITE, 8, 0, 512, b"\2" * 512)
    assert simple_reply(s, 8)[0] == EPERM
    request(s, CMD_READ, 9, 0, 512)
    assert simple_reply(s, 9, 512)[0] == 0
    s.close()

    good.stop.set()
    good.join()
    if good.error:
        sys.exit(f"the well-behaved client failed: {good.error!r}")
    print(f"well-behaved client: {good.rounds} write+verify rounds without error")


main()
