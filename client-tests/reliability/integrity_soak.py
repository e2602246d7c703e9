#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""integrity_soak.py — sector-exact integrity of snapshot images under concurrent writers, trims and zeroes.

Works against any front end that serves origins NAME and images NAME@SNAP plus the control socket (nbdsnapd,
nbdkit + the nbdsnap filter). Several writer connections per origin issue random writes, trims and write-zeroes
of 512 B to 4 MiB at sector (not chunk) alignment. Every written 512-byte sector names its origin, its sector
number and the unique id of the write (id 0: the initial pattern this script lays down first). Snapshot
controllers, one per disjoint origin group, repeatedly create + take a snapshot of their group mid-load, read
every image with concurrent reader connections while writers continue, check every sector, destroy it.

No timing: every request and every take is stamped with a logical clock (ticks drawn before the request is sent
and after its reply). For a sector s of an image taken between ticks SEND and REPLY, let T(s) be the latest
start of a request covering s that completed before SEND. The image may hold
  - the data of a write W covering s with start(W) < REPLY and end(W) > T(s) (not certainly overwritten),
  - zeroes if a trim or write-zeroes Z covering s satisfies the same condition,
  - the initial pattern only if no request covering s completed before SEND.
Anything else (other ids, torn sectors, foreign sectors, zeroes without a zeroing request) is a failure
reported with the origin, sector, found content and the acceptable set. At the end the origins themselves
are checked the same way against a "take" after all writers stopped.

Usage: integrity_soak.py --nbd SOCK --control SOCK --storage-dir DIR --origins A,B,C
                         [--groups 'A,B;C'] [--takes N] [--duration S] [--writers N] [--seed N]
"""
import argparse
import itertools
import os
import random
import struct
import sys
import threading
import time

import nbd
import nbdsnap

SECTOR = 512
MAGIC = b"NBDSNAPS"
HEADER = struct.Struct("<8sIQQI")  # magic, origin index, sector, write id, pad -> 32 bytes
ZERO_SECTOR = bytes(SECTOR)
MAX_SECTORS = 4 * 1024 * 1024 // SECTOR

_ticks = itertools.count(1)


def tick():
    return next(_ticks)  # atomic under the GIL


def sector_bytes(origin_index, sector, wid):
    return HEADER.pack(MAGIC, origin_index, sector, wid, 0xA5A5A5A5) * (SECTOR // HEADER.size)


def payload(origin_index, first, count, wid):
    return b"".join(sector_bytes(origin_index, s, wid) for s in range(first, first + count))


class Op:
    __slots__ = ("wid", "kind", "first", "count", "start", "end")

    def __init__(self, wid, kind, first, count):
        self.wid, self.kind, self.first, self.count = wid, kind, first, count
        self.start = self.end = None


class Origin:
    def __init__(self, index, name, size):
        self.index, self.name, self.size = index, name, size
        self.sectors = size // SECTOR
        self.lock = threading.Lock()
        self.ops = []      # every request, in start order
        self.by_wid = {}


class Failure(Exception):
    pass


class Soak:
    def __init__(self, args):
        self.args = args
        self.stop = threading.Event()
        self.errors = []
        self.wids = itertools.count(1)
        self.stats_lock = threading.Lock()
        self.takes = 0
        self.sectors_checked = 0
        self.ops_done = {"write": 0, "zero": 0, "trim": 0}
        self.bytes_written = 0
        names = args.origins.split(",")
        self.origins = {}
        for i, name in enumerate(names):
            h = self.connect(name)
            self.origins[name] = Origin(i, name, h.get_size())
            h.shutdown()
        groups = args.groups or ";".join(names)
        self.groups = [g.split(",") for g in groups.split(";")]

    def connect(self, export):
        h = nbd.NBD()
        h.connect_uri(f"nbd+unix:///{export}?socket={self.args.nbd}")
        return h

    def control(self, request, retry_busy=False):
        """One control request; with retry_busy, a `busy` refusal is tried again for up to 30 s."""
        arguments = dict(request)
        command = arguments.pop("command")
        deadline = time.monotonic() + 30
        with nbdsnap.Client(self.args.control) as client:
            while True:
                try:
                    return client.call(command, **arguments)
                except nbdsnap.Error as e:
                    if retry_busy and e.code == "busy" and time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    raise Failure(f"control {request} failed: {e}") from None

    def error(self, message):
        print("FAIL:", message, file=sys.stderr, flush=True)
        self.errors.append(message)
        self.stop.set()

    # ---- initial pattern ----------------------------------------------------------------------------------
    def lay_down_initial(self):
        for o in self.origins.values():
            h = self.connect(o.name)
            step = MAX_SECTORS
            for first in range(0, o.sectors, step):
                count = min(step, o.sectors - first)
                h.pwrite(payload(o.index, first, count, 0), first * SECTOR)
            h.flush()
            h.shutdown()

    # ---- writers ------------------------------------------------------------------------------------------
    def writer(self, origin, seed):
        rng = random.Random(seed)
        try:
            h = self.connect(origin.name)
            while not self.stop.is_set():
                # log-uniform size: mostly small requests, some up to 4 MiB
                count = min(int(2 ** rng.uniform(0, 13)), MAX_SECTORS, origin.sectors)
                first = rng.randrange(0, origin.sectors - count + 1)
                r = rng.random()
                kind = "write" if r < 0.7 else ("zero" if r < 0.85 else "trim")
                wid = next(self.wids) if kind == "write" else -next(self.wids)
                op = Op(wid, kind, first, count)
                data = payload(origin.index, first, count, wid) if kind == "write" else None
                with origin.lock:
                    op.start = tick()
                    origin.ops.append(op)
                    origin.by_wid[wid] = op
                try:
                    if kind == "write":
                        h.pwrite(data, first * SECTOR)
                    elif kind == "zero":
                        h.zero(count * SECTOR, first * SECTOR)
                    else:
                        h.trim(count * SECTOR, first * SECTOR)
                except nbd.Error as e:
                    raise Failure(f"origin {origin.name}: {kind} of sectors {first}+{count} failed: {e}")
                op.end = tick()
                with self.stats_lock:
                    self.ops_done[kind] += 1
                    self.bytes_written += count * SECTOR
                if rng.random() < 0.05:
                    h.flush()
            h.shutdown()
        except Failure as e:
            self.error(str(e))
        except Exception as e:  # noqa: BLE001
            self.error(f"writer on {origin.name}: {type(e).__name__}: {e}")

    # ---- checking -----------------------------------------------------------------------------------------
    def settled_ops(self, origin, reply):
        """The requests started before REPLY, once all of them have their completion tick."""
        with origin.lock:
            ops = [op for op in origin.ops if op.start < reply]
        deadline = time.monotonic() + 600
        while any(op.end is None for op in ops):
            if self.stop.is_set() and self.errors:
                raise Failure("stopped")
            if time.monotonic() > deadline:
                raise Failure(f"origin {origin.name}: a request did not complete in 10 minutes")
            time.sleep(0.01)
        return ops

    def check_image(self, origin, export, send, reply, label):
        ops = self.settled_ops(origin, reply)
        latest = [0] * origin.sectors  # T(s)
        for op in sorted((op for op in ops if op.end < send), key=lambda op: op.start):
            latest[op.first:op.first + op.count] = [op.start] * op.count
        zero_ok = bytearray(origin.sectors)
        for op in ops:
            if op.kind != "write":
                end = op.end
                for s in range(op.first, op.first + op.count):
                    if end > latest[s]:
                        zero_ok[s] = 1
        by_wid = origin.by_wid

        parts = self.args.readers
        step = -(-origin.sectors // parts)
        failures = []
        checked = [0] * parts

        def describe(s):
            acceptable = []
            if latest[s] == 0:
                acceptable.append("initial(0)")
            for op in ops:
                if op.first <= s < op.first + op.count and op.end > latest[s]:
                    acceptable.append(f"{op.kind}({op.wid}, ticks {op.start}-{op.end})")
            return ", ".join(acceptable) or "nothing"

        def read_part(part):
            try:
                h = self.connect(export)
                begin, stop_at = part * step, min(origin.sectors, (part + 1) * step)
                for first in range(begin, stop_at, 2048):
                    count = min(2048, stop_at - first)
                    data = h.pread(count * SECTOR, first * SECTOR)
                    for i in range(count):
                        s = first + i
                        sec = data[i * SECTOR:(i + 1) * SECTOR]
                        if sec == ZERO_SECTOR:
                            if zero_ok[s]:
                                continue
                            found = "zeroes"
                        else:
                            magic, oi, sn, wid, _ = HEADER.unpack_from(sec)
                            if magic != MAGIC or sec != sec[:HEADER.size] * (SECTOR // HEADER.size):
                                found = f"garbage or torn sector {sec[:40]!r}"
                            elif oi != origin.index or sn != s:
                                found = f"sector {sn} of origin index {oi} (wid {wid}) in the wrong place"
                            elif wid == 0:
                                if latest[s] == 0:
                                    continue
                                found = "initial(0)"
                            else:
                                op = by_wid.get(wid)
                                if op is not None and op.start < reply and op.end is not None and op.end > latest[s]:
                                    continue
                                found = f"write({wid}" + (f", ticks {op.start}-{op.end})" if op else ", unknown)")
                        failures.append(f"{label}: sector {s}: found {found}; expected one of: {describe(s)}")
                        if len(failures) > 20:
                            return
                    checked[part] += count
                h.shutdown()
            except nbd.Error as e:
                failures.append(f"{label}: read failed: {e}")
            except Exception as e:  # noqa: BLE001
                failures.append(f"{label}: reader: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=read_part, args=(p,)) for p in range(parts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with self.stats_lock:
            self.sectors_checked += sum(checked)
        if failures:
            raise Failure(f"{label} (take ticks {send}-{reply}):\n  " + "\n  ".join(failures[:20]))

    # ---- snapshot controllers -----------------------------------------------------------------------------
    def controller(self, gi, group, seed):
        rng = random.Random(seed)
        origins = [self.origins[n] for n in group]
        storage_size = sum(o.size for o in origins) + 16 * 1024 * 1024
        round_no = 0
        try:
            while not self.stop.is_set() and not self.done():
                round_no += 1
                name = f"g{gi}r{round_no}"
                path = os.path.join(self.args.storage_dir, name + ".diff")
                time.sleep(rng.uniform(0, 0.1))
                # busy: the other group's destroy still releases a file whose inode the new one got back.
                self.control({"command": "snapshot-create", "name": name, "origins": group,
                              "storage": [{"path": path, "size": storage_size}]}, retry_busy=True)
                time.sleep(rng.uniform(0, 0.05))
                send = tick()
                info = self.control({"command": "snapshot-take", "name": name})["snapshot"]
                reply = tick()
                if info["state"] != "taken":
                    raise Failure(f"{name}: state {info['state']} after take: {info}")
                images = {i["origin"]: i["export"] for i in info["images"]}
                checks = [threading.Thread(target=self.checked, args=(o, images[o.name], send, reply,
                                                                      f"image {images[o.name]}"))
                          for o in origins]
                for t in checks:
                    t.start()
                for t in checks:
                    t.join()
                if self.errors:
                    return
                info = self.control({"command": "snapshot-info", "name": name})["snapshot"]
                if info["state"] != "taken":
                    raise Failure(f"{name}: state {info['state']} after the check: {info}")
                self.control({"command": "snapshot-destroy", "name": name})
                if os.path.exists(path):
                    raise Failure(f"{name}: storage file {path} still exists after destroy")
                with self.stats_lock:
                    self.takes += 1
                    print(f"take {self.takes}: {name} of {','.join(group)} ticks {send}-{reply}, "
                          f"{info['chunks_copied']} chunks copied, ok", flush=True)
        except Failure as e:
            self.error(str(e))
        except Exception as e:  # noqa: BLE001
            self.error(f"controller {gi}: {type(e).__name__}: {e}")

    def checked(self, origin, export, send, reply, label):
        try:
            self.check_image(origin, export, send, reply, label)
        except Failure as e:
            self.error(str(e))
        except Exception as e:  # noqa: BLE001
            self.error(f"{label}: {type(e).__name__}: {e}")

    def done(self):
        return self.takes >= self.args.takes and time.monotonic() >= self.deadline

    def run(self):
        started = time.monotonic()
        self.deadline = started + self.args.duration
        self.lay_down_initial()
        writers = [threading.Thread(target=self.writer, args=(o, self.args.seed * 1000 + o.index * 10 + w))
                   for o in self.origins.values() for w in range(self.args.writers)]
        for t in writers:
            t.start()
        controllers = [threading.Thread(target=self.controller, args=(gi, g, self.args.seed * 7 + gi))
                       for gi, g in enumerate(self.groups)]
        for t in controllers:
            t.start()
        for t in controllers:
            t.join()
        self.stop.set()
        for t in writers:
            t.join()
        if not self.errors:
            now = tick()
            for o in self.origins.values():
                self.checked(o, o.name, now, now, f"origin {o.name} after all writers stopped")
        elapsed = time.monotonic() - started
        print(f"integrity soak: {self.takes} takes, {self.sectors_checked} sectors checked "
              f"({self.sectors_checked * SECTOR // (1024 * 1024)} MiB), requests {self.ops_done}, "
              f"{self.bytes_written // (1024 * 1024)} MiB written/zeroed/trimmed, {elapsed:.1f} s", flush=True)
        if self.errors:
            print(f"FAILED with {len(self.errors)} error(s)", file=sys.stderr)
            return 1
        return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nbd", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--storage-dir", required=True)
    p.add_argument("--origins", required=True, help="comma-separated origin export names")
    p.add_argument("--groups", help="snapshot groups: 'A,B;C' (disjoint); default one group of all")
    p.add_argument("--takes", type=int, default=20, help="at least this many takes in total")
    p.add_argument("--duration", type=float, default=0, help="run at least this many seconds")
    p.add_argument("--writers", type=int, default=2, help="writer connections per origin")
    p.add_argument("--readers", type=int, default=2, help="reader connections per image")
    p.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "1")))
    args = p.parse_args()
    print(f"seed {args.seed}", flush=True)
    sys.exit(Soak(args).run())


if __name__ == "__main__":
    main()
