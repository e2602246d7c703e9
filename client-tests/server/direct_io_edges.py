# SPDX-License-Identifier: BSD-3-Clause
"""direct_io_edges.py — libnbd and raw-socket reads of a --cache none nbdsnapd around the alignment edges of its
READ replies (server/request_executor.cpp places a reply's data on an aligned address so O_DIRECT reads land in
it). Every byte is compared with a model file. Used by test-direct-io-aligned-edges.sh:

  direct_io_edges.py edges URI MODEL          lengths and offsets around 512/4096/64 KiB and the end of the disk,
                                              simple and structured replies; reads past the end are refused
  direct_io_edges.py pool URI MODEL           connections in turn and at once, simple and structured, sizes that
                                              share the reply pool; an error reply and holes in between
  direct_io_edges.py hostile SOCK EXPORT MODEL  too-large READs refused, disconnects mid-reply, READ then close
  direct_io_edges.py hangups URI MODEL        (for TLS) clients that hang up with 32 MiB replies half sent
  direct_io_edges.py corrupted URI            every read of a corrupted image fails; the connection goes on
"""
import random
import socket
import struct
import sys
import threading

import nbd

import nbd_raw

MAX_REQUEST = 32 << 20  # nbd_protocol.h kMaxRequestLength
LENGTHS = [1, 511, 512, 513, 1024, 1536, 4095, 4096, 4097, 8192, 12288, 65535, 65536, 65537, 131072 + 512,
           1 << 20, MAX_REQUEST]
OFFSETS = [0, 1, 511, 512, 4095, 4096, 65536 + 512]


def model_bytes(path):
    """The model as a memoryview: its slices, compared with every read, share its bytes instead of copying
    up to 32 MiB each (fresh pages, and a page fault is dear on a virtual machine)."""
    with open(path, "rb") as f:
        return memoryview(f.read())


def connect(uri, structured):
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    h.set_uri_allow_local_file(True)  # tls-psk-file
    h.set_strict_mode(0)  # send what the server must refuse itself (past the end, too large)
    h.connect_uri(uri)
    assert h.get_structured_replies_negotiated() == structured, "structured replies not as asked"
    return h


def check(h, model, offset, length, what, flags=0):
    got = h.pread(length, offset, flags)
    if got != model[offset:offset + length]:
        first = next(i for i in range(length) if got[i] != model[offset + i])
        sys.exit(f"{what}: read of {length} at {offset} differs first at byte {first}")


def refused(h, offset, length, what):
    try:
        h.pread(length, offset)
    except nbd.Error:
        return
    sys.exit(f"{what}: read of {length} at {offset} (past the end or too large) succeeded")


def edges(uri, model_path):
    model = model_bytes(model_path)
    size = len(model)
    for structured in (False, True):
        what = f"{uri} structured={structured}"
        h = connect(uri, structured)
        assert h.get_size() == size, (h.get_size(), size)
        for length in LENGTHS:
            offsets = OFFSETS if length < (1 << 20) else [0, 4095]  # the large ones cost time, not coverage
            for offset in offsets + [size - length]:
                if offset + length <= size:
                    check(h, model, offset, length, what)
            for flags in ((0, nbd.CMD_FLAG_DF) if structured else (0,)):
                check(h, model, size - length, length, what, flags)
            refused(h, size - length + 1, length, what)  # one byte past the end
        refused(h, size, 1, what)
        refused(h, 0, MAX_REQUEST + 1, what)
        check(h, model, 4096, 4096, what)  # the connection goes on after the refusals
        h.shutdown()


def pool(uri, model_path):
    """Pooled reply buffers (64 KiB and more) go from simple to structured replies and back, from one
    connection to the next and between connections at once; errors and holes come in between."""
    model = model_bytes(model_path)
    size = len(model)
    sizes = [65536, 65536 + 512, 131072, 262144 + 4096, 1 << 20, 4096, 1536]
    failures = []

    def worker(seed, rounds):
        rng = random.Random(seed)
        try:
            for r in range(rounds):
                structured = (seed + r) % 2 == 0
                h = connect(uri, structured)
                for _ in range(24):
                    length = rng.choice(sizes)
                    offset = rng.randrange(0, size - length + 1)
                    if rng.random() < 0.5:
                        offset -= offset % 512
                    check(h, model, offset, length, f"worker {seed} structured={structured}")
                    if rng.random() < 0.1:
                        refused(h, size - length + 512, length, f"worker {seed}")
                # Many in flight at once: replies finish in any order and recycle each other's buffers.
                bufs = []
                for _ in range(16):
                    length = rng.choice(sizes)
                    offset = rng.randrange(0, size - length + 1) // 4096 * 4096
                    buf = nbd.Buffer(length)
                    bufs.append((offset, length, buf, h.aio_pread(buf, offset)))
                for offset, length, buf, cookie in bufs:
                    while not h.aio_command_completed(cookie):
                        h.poll(-1)
                    if buf.to_bytearray() != model[offset:offset + length]:
                        raise AssertionError(f"worker {seed}: aio read of {length} at {offset} differs")
                h.shutdown()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(f"{e!r}")

    for seed in range(4):  # connections in turn
        worker(seed, 2)
    threads = [threading.Thread(target=worker, args=(100 + i, 3)) for i in range(8)]  # and at once
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        if t.is_alive():
            sys.exit("a pool worker did not finish within 120 s")
    if failures:
        sys.exit("; ".join(failures))


def hostile(sock, export, model_path):
    model = model_bytes(model_path)
    size = len(model)
    # A READ one byte over the limit is refused with an error reply, and the connection goes on.
    s = nbd_raw.transmission(sock, export, timeout=30)
    nbd_raw.request(s, nbd_raw.CMD_READ, 1, 0, MAX_REQUEST + 1)
    error, _ = nbd_raw.simple_reply(s, 1)
    assert error != 0, "a READ of 32 MiB + 1 was accepted"
    nbd_raw.request(s, nbd_raw.CMD_READ, 2, 4096, 8192)
    error, data = nbd_raw.simple_reply(s, 2, 8192)
    assert error == 0 and data == model[4096:4096 + 8192], "the read after a refused one"
    s.close()
    # Disconnects in the middle of large replies, READ-then-close, and a reader that stops reading.
    for i in range(8):
        s = nbd_raw.transmission(sock, export, timeout=30)
        for handle in range(4):
            nbd_raw.request(s, nbd_raw.CMD_READ, handle, (handle * 4096) % (size - MAX_REQUEST), MAX_REQUEST)
        if i % 2:
            nbd_raw.recv_exact(s, 16 + 1000 * i)  # part of the first reply
        if i % 4 == 3:
            s.shutdown(socket.SHUT_RDWR)
        s.close()
    slow = []
    for _ in range(4):
        s = nbd_raw.transmission(sock, export, timeout=30)
        s.sendall(b"".join(nbd_raw.request_bytes(nbd_raw.CMD_READ, h, 0, 1 << 20) for h in range(64)))
        slow.append(s)
    # Meanwhile others are served with the right bytes.
    h = connect(f"nbd+unix:///{export}?socket={sock}", True)
    check(h, model, 512, 65536, "beside the slow readers")
    h.shutdown()
    for s in slow:
        s.close()


def hangups(uri, model_path):
    """libnbd clients (over TLS too) that close with large replies in flight, some of them partly received."""
    model = model_bytes(model_path)
    for i in range(4):
        h = connect(uri, i % 2 == 0)
        for k in range(3):
            h.aio_pread(nbd.Buffer(MAX_REQUEST), k * 4096)
        for _ in range(i):
            h.poll(1)  # take in some of the replies
        del h  # closes the socket with the rest unsent
    h = connect(uri, True)
    check(h, model, 4096, 1 << 20, "after the hang-ups")
    h.shutdown()


def corrupted(uri):
    for structured in (False, True):
        h = connect(uri, structured)
        for length in (512, 4096, 65536, 1 << 20):
            try:
                h.pread(length, 0)
            except nbd.Error:
                continue
            sys.exit(f"a read of {length} bytes of the corrupted image succeeded")
        h.shutdown()


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"edges": edges, "pool": pool, "hostile": hostile, "hangups": hangups, "corrupted": corrupted}[mode](*args)
