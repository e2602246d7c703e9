#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""snapshot_under_writers.py — takes one snapshot of several origins while writers run, then checks the images.

Writers put 4 KiB blocks that name (origin, block, sequence) on every origin through libnbd. Every write and
the take are stamped with a logical clock (a counter taken before the request is sent and after its reply),
so the check needs no timing: for each block the image must hold a write that may have been before the take
and is not certainly overwritten before it, or the original contents when no write certainly came before.
A "chain" writer writes block 0 of each origin in turn with the same number; an image set taken atomically
over all origins shows numbers that differ by at most one step, in the writing order.

Usage: snapshot_under_writers.py NBD_SOCKET CONTROL_SOCKET STORAGE_FILE ORIGIN...
"""
import itertools
import random
import struct
import sys
import threading

import nbd
import nbdsnap

BLOCK = 4096
MAGIC = b"NBDSNAPW"
WRITERS_PER_ORIGIN = 3
WRITES_BEFORE_TAKE = 200   # per writer, so the take lands in the middle of traffic
WRITES_AFTER_TAKE = 200    # per writer, so copy-on-write has work to do


class Clock:
    """A logical clock: a strictly increasing ticket shared by all threads."""

    def __init__(self):
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def tick(self):
        with self._lock:
            return next(self._counter)


def control(path, request):
    """One control request with the nbdsnap package; its result, or the test ends."""
    arguments = dict(request)
    command = arguments.pop("command")
    with nbdsnap.Client(path) as client:
        try:
            return client.call(command, **arguments)
        except nbdsnap.Error as e:
            raise SystemExit(f"control {command} failed: {e}") from None


def block_content(origin_index, block, seq):
    header = MAGIC + struct.pack("<IQQ", origin_index, block, seq)
    return (header * (BLOCK // len(header) + 1))[:BLOCK]


def decode(data):
    """(origin_index, block, seq) of a block; seq 0 is the original contents this script laid down."""
    if not data.startswith(MAGIC):
        raise SystemExit("image block holds neither original contents nor a write (zeroes or garbage)")
    header = data[:len(MAGIC) + 20]
    if block_content(*struct.unpack("<IQQ", header[len(MAGIC):]), ) != data:
        raise SystemExit("torn or foreign block content in image")
    return struct.unpack("<IQQ", header[len(MAGIC):])


def connect(sock, export):
    h = nbd.NBD()
    h.connect_uri(f"nbd+unix:///{export}?socket={sock}")
    return h


class Writer(threading.Thread):
    def __init__(self, sock, origin, origin_index, blocks, clock, seqs, log, before_take, taken):
        super().__init__(daemon=True)
        self.h = connect(sock, origin)
        self.origin_index, self.blocks, self.clock, self.seqs = origin_index, blocks, clock, seqs
        self.log, self.before_take, self.taken = log, before_take, taken
        self.rng = random.Random(origin_index * 1000 + threading.active_count())
        self.error = None

    def run(self):
        try:
            done = after_take = 0
            while after_take < WRITES_AFTER_TAKE:
                block = self.rng.randrange(1, self.blocks)  # block 0 belongs to the chain writer
                seq = next(self.seqs)
                start = self.clock.tick()
                self.h.pwrite(block_content(self.origin_index, block, seq), block * BLOCK)
                end = self.clock.tick()
                self.log.append((self.origin_index, block, seq, start, end))
                done += 1
                if done == WRITES_BEFORE_TAKE:
                    self.before_take.release()
                if self.taken.is_set():
                    after_take += 1
            self.h.flush()
        except Exception as e:  # reported by the main thread
            self.error = e
            self.before_take.release()


def chain_writer(sock, origins, clock, chain_log, stop):
    handles = [connect(sock, o) for o in origins]
    number = 0
    while not stop.is_set():
        number += 1
        for index, h in enumerate(handles):
            h.pwrite(block_content(index, 0, number), 0)
        chain_log.append(number)


def lay_down_original_contents(sock, origins, blocks):
    """Every block names itself with sequence 0, so an image showing zeroes or misplaced data is caught."""
    for index, origin in enumerate(origins):
        h = connect(sock, origin)
        for first in range(0, blocks, 256):
            count = min(256, blocks - first)
            h.pwrite(b"".join(block_content(index, b, 0) for b in range(first, first + count)), first * BLOCK)
        h.flush()
        h.shutdown()


def allowed_values(writes, take_start, take_end):
    """Sequences the image may show for one block (0 = original contents)."""
    certain_before = [w for w in writes if w[4] < take_start]
    allowed = set()
    if not certain_before:
        allowed.add(0)
    for w in writes:
        if w[3] > take_end:
            continue  # started after the take returned
        if any(w[4] < o[3] and o[4] < take_start for o in certain_before):
            continue  # certainly overwritten before the take began
        allowed.add(w[2])
    return allowed


def main():
    sock, control_sock, storage, *origins = sys.argv[1:]
    probe = connect(sock, origins[0])
    size = probe.get_size()
    probe.shutdown()
    blocks = size // BLOCK

    lay_down_original_contents(sock, origins, blocks)
    clock, seqs = Clock(), itertools.count(1)
    log, chain_log = [], []
    before_take = threading.Semaphore(0)
    taken, chain_stop = threading.Event(), threading.Event()
    writers = [Writer(sock, o, i, blocks, clock, seqs, log, before_take, taken)
               for i, o in enumerate(origins) for _ in range(WRITERS_PER_ORIGIN)]
    chain = threading.Thread(target=chain_writer, args=(sock, origins, clock, chain_log, chain_stop), daemon=True)

    control(control_sock, {"command": "snapshot-create", "name": "live", "origins": origins,
                           "storage": [{"path": storage, "size": size * len(origins)}]})
    for w in writers:
        w.start()
    chain.start()
    for _ in writers:
        before_take.acquire()
    take_start = clock.tick()
    control(control_sock, {"command": "snapshot-take", "name": "live"})
    take_end = clock.tick()
    taken.set()
    for w in writers:
        w.join()
        if w.error:
            raise SystemExit(f"writer failed: {w.error}")
    chain_stop.set()
    chain.join()

    by_block = {}
    for entry in log:
        by_block.setdefault((entry[0], entry[1]), []).append(entry)
    checked = changed = 0
    chain_numbers = []
    for index, origin in enumerate(origins):
        image = connect(sock, f"{origin}@live")
        if not image.is_read_only():
            raise SystemExit("a read-only snapshot image accepts writes")
        for first in range(0, blocks, 256):
            data = image.pread(min(256, blocks - first) * BLOCK, first * BLOCK)
            for i in range(len(data) // BLOCK):
                block = first + i
                found = decode(data[i * BLOCK:(i + 1) * BLOCK])
                if (found[0], found[1]) != (index, block):
                    raise SystemExit(f"{origin}@live block {block} holds data of another place: {found}")
                seq = found[2]
                if block == 0:
                    chain_numbers.append(seq)
                    continue
                allowed = allowed_values(by_block.get((index, block), []), take_start, take_end)
                if seq not in allowed:
                    raise SystemExit(f"{origin}@live block {block} shows write {seq}; allowed {sorted(map(str, allowed))}")
                checked += 1
                changed += seq != 0
        image.shutdown()
    # Atomic over origins: the chain writes origin 0, 1, ... in turn, so numbers never increase along the list
    # and differ by at most one.
    if any(b > a for a, b in zip(chain_numbers, chain_numbers[1:])) or chain_numbers[0] - chain_numbers[-1] > 1:
        raise SystemExit(f"images are not one point in time across origins: chain numbers {chain_numbers}")
    info = control(control_sock, {"command": "snapshot-info", "name": "live"})["snapshot"]
    if info["state"] != "taken" or info["chunks_copied"] == 0:
        raise SystemExit(f"unexpected snapshot state after writes: {info}")
    print(f"ok: {checked} blocks checked ({changed} written before the take), chain {chain_numbers}, "
          f"{len(log)} writes, {info['chunks_copied']} chunks copied, take at tick {take_start}..{take_end}")
    control(control_sock, {"command": "snapshot-destroy", "name": "live"})


if __name__ == "__main__":
    main()
