#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""tracked_paths.py — every write that reaches an origin's disk is tracked, whatever the clients and the
control socket do meanwhile (issue 14).

Usage: tracked_paths.py --nbd SOCK --control CTL --origin NAME --file PATH [--attach] [--duration S] [--seed N]

Writer clients (libnbd) and slow-handshake clients (a raw socket that sleeps between options) connect to the
origin, write their own stripes of it and disconnect (one more client tries the same by another export name), while a controller attaches (--attach: the front end
attaches by path, nbdsnapd), detaches (with and without force), takes, reads images and destroys at random.
Takes are quiesced (writers pause between requests), so the model knows the take-time content exactly.

A write that reached the disk untracked fails the test, whichever way it shows:
  - an image read differs from the origin's content at take;
  - the CBT map after a take misses a write completed since the previous take (same generation);
  - a write the server refused is found on the disk (each client reads its stripe back from the file);
  - at the end the file differs from the content of every write the server acknowledged.
"""
import argparse
import os
import random
import socket
import struct
import sys
import threading
import time

import nbd
import nbd_raw

from reltools import fail, main_wrapper, ok
import nbdsnap

KiB = 1024
STRIPES = 9            # clients 0..5 write with libnbd, 6..7 with slow handshakes, 8 through an alias name
SLOW_CLIENTS = 2
ALIAS_STRIPE = 8
UNIT = 4 * KiB


class Model:
    """The origin's content as acknowledged writes left it, and the writes since the last take."""

    def __init__(self, path, size):
        with open(path, "rb") as f:
            self.content = bytearray(f.read())
        assert len(self.content) == size
        self.lock = threading.Lock()
        self.since_take = []           # (offset, length) acknowledged since the last take
        self.quiesce = threading.Condition()
        self.writing = 0               # clients inside a request
        self.paused = False
        self.errors = []
        self.cut_off = {}              # stripe -> (offset, data): a write whose connection went before its reply
        self.takes = 0
        self.fate = {}                 # (stripe, serial) -> what became of that write, for failure messages
        self.counts = dict(writes=0, refused=0, lost=0, lost_landed_client=0, lost_landed_take=0,
                           lost_landed_end=0, connects=0, refused_connects=0, slow_handshakes=0)

    def begin_request(self):
        with self.quiesce:
            while self.paused:
                self.quiesce.wait()
            self.writing += 1

    def end_request(self):
        with self.quiesce:
            self.writing -= 1
            self.quiesce.notify_all()

    def pause(self):
        with self.quiesce:
            self.paused = True
            while self.writing:
                self.quiesce.wait()

    def resume(self):
        with self.quiesce:
            self.paused = False
            self.quiesce.notify_all()

    def acknowledged(self, offset, data, how="acknowledged"):
        with self.lock:
            self.fate[tag_of(data)] = f"{how} after take {self.takes}"
            self.content[offset:offset + len(data)] = data
            self.since_take.append((offset, len(data)))
            self.counts["writes"] += 1

    def describe(self, content, offset):
        """Whose write the bytes at offset of content are (every write is 16-byte tags from a 4 KiB boundary)."""
        tag = tag_of(content[offset // 16 * 16:])
        with self.lock:
            return f"stripe {tag[0]} serial {tag[1]} ({self.fate.get(tag, 'never written by this run')})"

    def error(self, message):
        with self.lock:
            self.errors.append(message)

    def lose(self, stripe, offset, data):
        """Called inside the request (before end_request), so a take that paused the writers sees it."""
        with self.lock:
            self.cut_off[stripe] = (offset, data)
            self.fate[tag_of(data)] = f"cut off by a disconnect after take {self.takes}"
            self.counts["lost"] += 1

    def resolve_lost(self, path, stripe=None, who="client"):
        """Settles cut-off writes: the stripe's (a client that connected again), or all of them (a take, with the
        writers paused). Both happen with no request of that stripe in flight, and after the detach that cut the
        write has returned: the write has happened or never will. A take must settle them before it records the
        take-time content, or the image shows a write the model never learnt of."""
        with self.lock:
            stripes = list(self.cut_off) if stripe is None else [stripe] if stripe in self.cut_off else []
            lost = [self.cut_off.pop(s) for s in stripes]
        for offset, data in lost:
            if resolve_lost_write(self, path, (offset, data)):
                with self.lock:
                    self.counts[f"lost_landed_{who}"] += 1


def tag_of(data):
    """(stripe, serial) of the write whose bytes data starts with."""
    return struct.unpack_from(">II", data)


def stripe_range(stripe, size):
    length = size // STRIPES // UNIT * UNIT
    return stripe * length, length


def random_write(rng, stripe, size, serial):
    start, length = stripe_range(stripe, size)
    units = rng.randint(1, 16)
    offset = start + UNIT * rng.randrange(0, (length - units * UNIT) // UNIT + 1)
    # Every write's bytes say who wrote them and when: a stale copy cannot be mistaken for them.
    tag = struct.pack(">IIQ", stripe, serial, rng.getrandbits(64))
    return offset, (tag * (units * UNIT // len(tag) + 1))[:units * UNIT]


def read_file(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def check_refused_write(model, path, offset, data, how):
    """A write the server refused must not be on the disk (this client owns the range)."""
    if read_file(path, offset, len(data)) == data:
        model.error(f"a write the server refused ({how}) reached the disk at {offset}, +{len(data)}")


def resolve_lost_write(model, path, lost):
    """A write whose connection was cut before its reply may or may not have happened (see Model.resolve_lost):
    if it is on the disk, it was done (and tracked, which the takes check), else nothing of it may be there.
    Returns whether it was done."""
    offset, data = lost
    on_disk = read_file(path, offset, len(data))
    if on_disk == data:
        model.acknowledged(offset, data, "cut off by a disconnect, found on the disk")
        return True
    with model.lock:
        expected = bytes(model.content[offset:offset + len(data)])
    if on_disk != expected:
        model.error(f"a write cut off by a disconnect left part of its data at {offset}, +{len(data)}")
    return False


class LibnbdClient(threading.Thread):
    def __init__(self, model, args, stripe, stop):
        super().__init__(daemon=True)
        self.model, self.args, self.stripe, self.stop = model, args, stripe, stop

    def export(self):
        return self.args.origin

    def settle_lost_write(self):
        """Connected again: the detach that cut this client's last write has returned. Inside a request window,
        so a take cannot record the content half-way through."""
        self.model.begin_request()
        try:
            self.model.resolve_lost(self.args.file, self.stripe)
        finally:
            self.model.end_request()

    def run(self):
        rng = random.Random(self.args.seed * 100 + self.stripe)
        serial = 0
        while not self.stop.is_set():
            h = nbd.NBD()
            try:
                h.connect_uri(f"nbd+unix:///{self.export()}?socket={self.args.nbd}")
            except nbd.Error:
                self.model.counts["refused_connects"] += 1
                time.sleep(0.05)
                continue
            self.model.counts["connects"] += 1
            self.settle_lost_write()
            for _ in range(rng.randint(1, 20)):
                if self.stop.is_set():
                    break
                time.sleep(rng.random() * 0.004)  # interleaving matters here, not throughput
                serial += 1
                offset, data = random_write(rng, self.stripe, self.args.size, serial)
                self.model.begin_request()
                failed = cut_off = None
                try:
                    h.pwrite(data, offset)
                    self.model.acknowledged(offset, data)
                except nbd.Error as e:
                    failed = str(e)
                    cut_off = h.aio_is_dead() or h.aio_is_closed()
                    if cut_off:  # settled after the next connect, or by a take before that
                        self.model.lose(self.stripe, offset, data)
                finally:
                    self.model.end_request()
                if failed is not None:
                    if not cut_off:
                        self.model.counts["refused"] += 1
                        check_refused_write(self.model, self.args.file, offset, data, failed)
                    break  # a detached origin: connect again
            try:
                h.shutdown()
            except nbd.Error:
                pass
            del h
            time.sleep(rng.random() * 0.01)


class AliasClient(LibnbdClient):
    """Writes its stripe through another export name: one disk must be one origin, so the front end refuses the
    name, or whatever it accepts must be tracked as the origin (the images and CBT checks show it)."""

    def export(self):
        return self.args.alias


class SlowHandshakeClient(LibnbdClient):
    """Sleeps between handshake steps, so detaches and takes land in the middle of its negotiation."""

    def run(self):
        rng = random.Random(self.args.seed * 100 + self.stripe)
        serial = 0
        name = self.args.origin.encode()
        while not self.stop.is_set():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            try:
                s.connect(self.args.nbd)
                nbd_raw.greet(s)
                for _ in range(rng.randint(0, 3)):
                    time.sleep(rng.random() * 0.2)
                    nbd_raw.option(s, nbd_raw.OPT_LIST)
                time.sleep(rng.random() * 0.2)
                if nbd_raw.option(s, nbd_raw.OPT_GO, nbd_raw.go_data(name)) != nbd_raw.REP_ACK:
                    self.model.counts["refused_connects"] += 1
                    s.close()
                    time.sleep(0.05)
                    continue
                self.model.counts["slow_handshakes"] += 1
                self.settle_lost_write()
                for _ in range(rng.randint(1, 5)):
                    time.sleep(rng.random() * 0.1)
                    serial += 1
                    offset, data = random_write(rng, self.stripe, self.args.size, serial)
                    self.model.begin_request()
                    try:
                        nbd_raw.request(s, nbd_raw.CMD_WRITE, serial, offset, len(data), data)
                        _, error, _ = nbd_raw.read_simple_reply(s)
                    except (EOFError, OSError):
                        error = -1
                    if error == 0:
                        self.model.acknowledged(offset, data)
                    elif error == -1:
                        self.model.lose(self.stripe, offset, data)
                    self.model.end_request()
                    if error == -1:
                        break
                    if error != 0:
                        self.model.counts["refused"] += 1
                        check_refused_write(self.model, self.args.file, offset, data, f"NBD error {error}")
                        break
            except (EOFError, OSError):
                pass
            finally:
                s.close()


class Controller:
    def __init__(self, model, args):
        self.model, self.args = model, args
        self.ctl = nbdsnap.Client(args.control)
        self.rng = random.Random(args.seed)
        self.snapshot = None     # (name, take-time content)
        self.last_take = None    # (checkpoint name, generation)
        self.serial = 0
        self.counts = dict(takes=0, destroys=0, detaches=0, forced=0, busy=0, attaches=0, image_reads=0,
                           cbt_checks=0, new_generations=0)

    def attached(self):
        reply = self.ctl.reply("origin-info", name=self.args.origin)
        return reply.get("ok", False)

    def ensure_attached(self):
        if self.attached():
            return True
        if self.args.attach:
            self.ctl.call("origin-attach", name=self.args.origin, path=self.args.file)
            self.counts["attaches"] += 1
            return True
        # The filter attaches a listed export when a client opens it: let a connect do that.
        try:
            h = nbd.NBD()
            h.connect_uri(f"nbd+unix:///{self.args.origin}?socket={self.args.nbd}")
            h.shutdown()
        except nbd.Error:
            pass
        return self.attached()

    def take(self):
        if self.snapshot or not self.ensure_attached():
            return
        self.serial += 1
        name = f"s{self.serial}"
        storage = os.path.join(self.args.storage_dir, name)
        self.model.pause()
        try:
            self.model.resolve_lost(self.args.file, who="take")
            reply = self.ctl.reply("snapshot-create", name=name, origins=[self.args.origin],
                                  storage=[{"path": storage, "size": self.args.size + (4 << 20)}])
            if not reply["ok"]:
                if reply["error"]["code"] == "not_found":  # detached meanwhile (it cannot be: we control it)
                    fail(f"create {name}: {reply}")
                fail(f"create {name}: {reply}")
            reply = self.ctl.reply("snapshot-take", name=name)
            if not reply["ok"]:
                self.ctl.call("snapshot-destroy", name=name)
                fail(f"take {name}: {reply}")
            with self.model.lock:
                frozen = bytes(self.model.content)
                self.model.takes += 1
                written = self.model.since_take
                self.model.since_take = []
            self.check_cbt(name, written)
        finally:
            self.model.resume()
        self.snapshot = (name, frozen)
        self.counts["takes"] += 1

    def check_cbt(self, name, written):
        """Right after a quiesced take the live map since the previous take holds exactly the writes between."""
        info = self.ctl.call("cbt-info", origin=self.args.origin)["cbt"]
        generation = info["generation"]
        if self.last_take and self.last_take[1] == generation and self.last_take[0] in info["checkpoints"]:
            ranges = self.ctl.call("cbt-map", origin=self.args.origin, since=self.last_take[0])["ranges"]
            for offset, length in written:
                covered = sum(max(0, min(offset + length, r["offset"] + r["length"]) - max(offset, r["offset"]))
                              for r in ranges)
                if covered != length:
                    fail(f"CBT since {self.last_take[0]} misses the acknowledged write [{offset}, +{length}) "
                         f"before take {name}")
                self.counts["cbt_checks"] += 1
        elif self.last_take:
            self.counts["new_generations"] += 1
        self.last_take = (name, generation)

    def read_image(self):
        if not self.snapshot:
            return
        name, frozen = self.snapshot
        try:
            h = nbd.NBD()
            h.connect_uri(f"nbd+unix:///{self.args.origin}@{name}?socket={self.args.nbd}")
        except nbd.Error:
            return  # the origin was force-detached: its image is gone
        try:
            step = 1 << 20
            for offset in range(0, self.args.size, step):
                got = h.pread(min(step, self.args.size - offset), offset)
                want = frozen[offset:offset + len(got)]
                if got != want:
                    bad = next(i for i in range(len(got)) if got[i] != want[i])
                    fail(f"image {self.args.origin}@{name}: byte {offset + bad} is not the take-time byte "
                         "(a write reached the origin without copy-on-write): the image has the write "
                         f"{self.model.describe(got, bad)}, take {self.counts['takes']} recorded "
                         f"{self.model.describe(want, bad)}")
        except nbd.Error as e:
            if self.attached():
                info = self.ctl.reply("snapshot-info", name=name)
                fail(f"image {self.args.origin}@{name} read failed while the origin is attached: {e}; {info}")
        finally:
            del h
        self.counts["image_reads"] += 1

    def destroy(self):
        if not self.snapshot:
            return
        self.read_image()
        self.ctl.call("snapshot-destroy", name=self.snapshot[0])
        self.snapshot = None
        self.counts["destroys"] += 1

    def detach(self, force):
        reply = self.ctl.reply("origin-detach", name=self.args.origin, force=force)
        if reply["ok"]:
            self.counts["detaches"] += 1
            self.counts["forced"] += force
            if self.snapshot:
                self.ctl.call("snapshot-destroy", name=self.snapshot[0])  # its image went with the origin
                self.snapshot = None
        elif reply["error"]["code"] in ("busy", "not_found"):
            self.counts["busy"] += 1
        else:
            fail(f"detach: {reply}")

    def step(self):
        pick = self.rng.random()
        if pick < 0.25:
            self.take()
        elif pick < 0.45:
            self.read_image()
        elif pick < 0.60:
            self.destroy()
        elif pick < 0.70:
            self.detach(force=False)
        elif pick < 0.80:
            self.detach(force=True)
        else:
            self.ensure_attached()
        time.sleep(self.rng.random() * 0.05)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nbd", required=True)
    parser.add_argument("--control", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--storage-dir", required=True)
    parser.add_argument("--attach", action="store_true", help="the front end attaches origins by path")
    parser.add_argument("--alias", default="other", help="another export name a client writes the origin by")
    parser.add_argument("--duration", type=float, default=12)
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "little"))
    args = parser.parse_args()
    args.size = os.path.getsize(args.file)
    print(f"seed {args.seed} (rerun with --seed {args.seed})", flush=True)

    model = Model(args.file, args.size)
    controller = Controller(model, args)
    controller.ensure_attached()
    stop = threading.Event()
    clients = [LibnbdClient(model, args, i, stop) for i in range(STRIPES - 1 - SLOW_CLIENTS)]
    clients += [SlowHandshakeClient(model, args, i, stop) for i in range(STRIPES - 1 - SLOW_CLIENTS, STRIPES - 1)]
    clients.append(AliasClient(model, args, ALIAS_STRIPE, stop))
    for c in clients:
        c.start()
    deadline = time.monotonic() + args.duration
    try:
        while time.monotonic() < deadline and not model.errors:
            controller.step()
    finally:
        stop.set()
        for c in clients:
            c.join(60)
            if c.is_alive():
                fail("a client did not finish within 60 s")
    if model.errors:
        fail("; ".join(model.errors[:5]))
    model.resolve_lost(args.file, who="end")  # writes cut off at the very end: the server is quiet now
    if model.errors:
        fail("; ".join(model.errors[:5]))
    controller.destroy()
    with open(args.file, "rb") as f:
        on_disk = f.read()
    if on_disk != model.content:
        bad = next(i for i in range(len(on_disk)) if on_disk[i] != model.content[i])
        fail(f"the origin file differs from the acknowledged writes at byte {bad}: it has the write "
             f"{model.describe(on_disk, bad)}, the model {model.describe(model.content, bad)}")
    ok(f"{model.counts} {controller.counts}")
    if controller.counts["takes"] < 3 or model.counts["writes"] < 50:
        fail("the run was too short to mean anything")


if __name__ == "__main__":
    main_wrapper(main)
