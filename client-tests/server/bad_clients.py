#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""bad_clients.py — misbehaving NBD clients against nbdsnapd while a well-behaved libnbd client works.

Usage: bad_clients.py SOCKET ORIGIN IMAGE
Garbage handshakes, garbage requests, oversized reads and writes, unknown options, out-of-range and
read-only requests each get the error (or disconnect) the NBD spec asks for; meanwhile a libnbd client
writes and verifies data and must see no error at all.
"""
import os
import struct
import sys
import threading

import nbd
from nbd_raw import (CMD_READ, CMD_WRITE, EINVAL, ENOSPC, EPERM, closed_by_server, greet, go, read_option_reply,
                     recv_exact, request, send_option, simple_reply)
import nbd_raw

SOCK, ORIGIN, IMAGE = sys.argv[1:4]


def connect():
    return nbd_raw.connect(SOCK)


def transmission(name):
    return nbd_raw.transmission(SOCK, name)


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
    s.sendall(nbd_raw.IHAVEOPT + struct.pack(">II", nbd_raw.OPT_LIST, 1 << 30))
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
