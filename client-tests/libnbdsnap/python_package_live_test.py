#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""python_package_live_test.py — the nbdsnap Python package against a running server (nbdsnapd, or nbdkit with
the nbdsnap filter), used with python3-libnbd as an agent would: data written before a take is what the image
reads (after later writes to the origin), block status of the image, the changed ranges since the take's
checkpoint, refusals as nbdsnap.Error with the server's code and errno, the event stream, calls from several
threads on one client, and close().

Usage: python_package_live_test.py CONTROL-SOCKET NBD-SOCKET ORIGIN STORAGE-DIR FRONT-END
"""
import errno
import sys
import threading
import time

import nbd
import nbdsnap

MiB = 1024 * 1024


def fail(message):
    print("FAIL:", message, file=sys.stderr, flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def nbd_connect(sock, export, contexts=()):
    h = nbd.NBD()
    for context in contexts:
        h.add_meta_context(context)
    h.connect_uri(f"nbd+unix:///{export}?socket={sock}")
    return h


def main(control, sock, origin, storage_dir, front_end):
    with nbdsnap.Client(control, timeout=10) as ctl:
        version = ctl.version()
        check(version["front_end"] == front_end and version["protocol"] == 1, f"version: {version}")
        check(origin in [o["name"] for o in ctl.origins()], "origins does not list the origin")
        print("ok: version, origins", flush=True)

        live = nbd_connect(sock, origin)
        live.pwrite(b"\x5a" * MiB, 2 * MiB)
        live.flush()
        after = ctl.wait_events()["last_sequence"]
        snapshot = ctl.snapshot_create("py1", [origin], storage=[(f"{storage_dir}/py1.diff", 16 * MiB)])
        check(snapshot["state"] == "created", f"snapshot-create: {snapshot}")
        snapshot = ctl.snapshot_take("py1")
        export = snapshot["images"][0]["export"]
        check(export == f"{origin}@py1", f"image export {export}")
        live.pwrite(b"\xa5" * MiB, 2 * MiB)  # after the take: the image must not see it
        live.flush()
        image = nbd_connect(sock, export, ["base:allocation"])
        check(image.pread(MiB, 2 * MiB) == b"\x5a" * MiB, "the image does not read the take-time data")
        check(live.pread(MiB, 2 * MiB) == b"\xa5" * MiB, "the origin does not read the new data")
        extents = []
        image.block_status(4 * MiB, 0, lambda context, offset, entries, err: extents.extend(entries) or 0)
        check(extents and sum(extents[0::2]) >= MiB, f"block status of the image: {extents}")
        print("ok: snapshot taken through the package, its image read with libnbd holds the take-time data", flush=True)

        changed = ctl.cbt_changed_ranges(origin, since="py1")
        check(any(r["offset"] <= 2 * MiB < r["offset"] + r["length"] for r in changed["ranges"]),
              f"cbt map since py1 lacks the write after the take: {changed}")
        check("py1" in [c["name"] for c in ctl.checkpoints(origin)["checkpoints"]], "no checkpoint py1")
        print("ok: changed ranges since the take's checkpoint", flush=True)

        ctl.cbt_mark_dirty(origin, [(0, 4096), (8 * MiB, 4096)])
        page = ctl.cbt_map(origin, max_ranges=1)
        check(len(page["ranges"]) == 1 and page["more"], f"cbt-map max_ranges=1: {page}")
        raw = ctl.cbt_whole_raw_map(origin)
        check(not raw["more"] and sum(blocks for _, blocks in raw["runs"]) * raw["block_size"] == raw["length"],
              f"whole raw map: {raw}")
        ctl.checkpoint_delete(origin, "py1")
        try:
            ctl.cbt_map(origin, since="py1")
            fail("cbt-map since a deleted checkpoint succeeded")
        except nbdsnap.Error as e:
            check(e.code == "checkpoint_gone", f"since a deleted checkpoint: {e!r}")
        print("ok: paged cbt-map, whole raw map, checkpoint-delete gives checkpoint_gone", flush=True)

        # 40,000 ranges: more than one request holds under the protocol's 1 MiB line.
        ctl.cbt_mark_dirty(origin, [(i * 512, 256) for i in range(40000)])
        marked = ctl.cbt_map(origin)["ranges"]
        check(marked and marked[0]["offset"] == 0 and marked[0]["length"] >= 39999 * 512 + 256,
              f"a long mark-dirty list: {marked[:2]}")
        print("ok: cbt_mark_dirty of 40,000 ranges", flush=True)

        try:
            ctl.snapshot_info("no-such-snapshot")
            fail("snapshot-info of a missing snapshot succeeded")
        except nbdsnap.Error as e:
            check(e.from_server and e.code == "not_found" and e.errno == errno.ENOENT, f"refusal: {e!r}")
        check(ctl.state == "connected", "a refusal ended the connection")
        print("ok: refusal raised as nbdsnap.Error(not_found, errno 2)", flush=True)

        stream = ctl.events(after, wait=1.0)
        seen = []
        for _ in range(20):
            event = stream.next(1.0)
            if event is None:
                break
            seen.append((event["type"], event.get("snapshot")))
            if ("snapshot_taken", "py1") in seen:
                break
        check(("snapshot_taken", "py1") in seen, f"events after {after}: {seen}")
        print("ok: event stream", flush=True)

        # The callback form: only py1's snapshot_taken passes the filter; the callback calls the client and
        # stops the watch. Then a threading.Event set by another thread ends a watch nothing matches.
        passed = []

        def on_event(event):
            passed.append((event["type"], event["snapshot"], ctl.snapshot_info(event["snapshot"])["state"]))
            return False

        end = ctl.watch_events(on_event, types=["snapshot_taken"], snapshot="py1", after=after, timeout=10, poll=0.1)
        check(end["reason"] == "callback_stopped" and end["delivered"] == 1 and end["position"] > after
              and passed == [("snapshot_taken", "py1", "taken")], f"watch_events: {end} {passed}")
        stop = threading.Event()
        stopper = threading.Timer(0.2, stop.set)
        stopper.start()
        start = time.monotonic()
        end = ctl.watch_events(lambda event: fail(f"unexpected {event}"), types=["corrupted"], snapshot="nothing",
                               after=end["position"], timeout=10, poll=0.1, stop=stop)
        stopper.join()
        check(end["reason"] == "stop_requested" and time.monotonic() - start < 3, f"stopped watch: {end}")
        end = ctl.watch_events(lambda event: True, types=["corrupted"], after=end["position"], timeout=0.3, poll=0.1)
        check(end["reason"] == "timed_out" and end["delivered"] == 0, f"watch to its timeout: {end}")
        print("ok: watch_events: filter, callback calling the client, stop event, timeout", flush=True)

        failures = []

        def hammer():
            for _ in range(50):
                if ctl.origin_info(origin)["snapshot"] != "py1":
                    failures.append(1)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not failures, f"{len(failures)} calls from threads went wrong")
        print("ok: 200 calls from 4 threads on one client", flush=True)

        try:
            ctl.snapshot_destroy("py1")
            fail("destroy went through while a client reads py1's image")
        except nbdsnap.Error as e:
            check(e.code == "busy", f"destroy with an image client: {e.code} {e}")
        ctl.snapshot_destroy("py1", force=True)
        try:
            image.pread(4096, 0)
            fail("the image client of a destroyed snapshot still reads")
        except nbd.Error:
            pass
        print("ok: destroy refused (busy) while an image is read; force destroys it, the reader gets errors",
              flush=True)
        try:
            image.shutdown()
        except nbd.Error:
            pass  # the server may have closed it with the snapshot
        live.shutdown()
        check(ctl.snapshots() == [], "snapshot-list after destroy")
    try:
        ctl.version()
        fail("a closed client answered")
    except nbdsnap.Error as e:
        check(e.code == "not_connected", f"closed client: {e!r}")
    print("ok: destroy, close", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(*sys.argv[1:])
