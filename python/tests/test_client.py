#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""test_client.py — the nbdsnap package against fake servers on Unix sockets: refusals as nbdsnap.Error with
the server's code and errno, a silent server's timeout and the dead state it leaves, an NBD socket given by
mistake, malformed replies, paging of CBT maps, and calls from several threads. Run: python3 -m unittest."""
import errno
import json
import math
import os
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nbdsnap  # noqa: E402

NBD_GREETING = b"NBDMAGICIHAVEOPT\x00\x03"


class FakeServer:
    """A Unix socket server running serve(connection) on a thread per client, until stopped."""

    def __init__(self, serve):
        self.dir = tempfile.mkdtemp(prefix="nbdsnap-py-test.")
        self.path = os.path.join(self.dir, "s.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(8)
        self.serve = serve
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, conn):
        with conn:
            conn.settimeout(5)
            try:
                self.serve(conn)
            except OSError:
                pass

    def stop(self):
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for t in self.threads:
            t.join(6)
        os.unlink(self.path)
        os.rmdir(self.dir)


def replying(answer):
    """serve(): answers each request line with answer(request) as JSON."""
    def serve(conn):
        stream = conn.makefile("rwb")
        for line in stream:
            stream.write(json.dumps(answer(json.loads(line))).encode() + b"\n")
            stream.flush()
    return serve


def silent(conn):
    while conn.recv(256):
        pass


def nbd_like(conn):
    conn.sendall(NBD_GREETING)
    conn.recv(4)


class ClientTest(unittest.TestCase):
    def server(self, serve):
        server = FakeServer(serve)
        self.addCleanup(server.stop)
        return server

    def test_a_refusal_carries_the_servers_code_and_errno_and_the_client_stays_connected(self):
        def answer(request):
            if request["command"] == "snapshot-info":
                return {"ok": False, "error": {"code": "not_found", "errno": 2, "message": "no snapshot x"}}
            return {"ok": True, "version": "9", "protocol": 1, "front_end": "nbdsnapd"}
        server = self.server(replying(answer))
        with nbdsnap.Client(server.path) as ctl:
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.snapshot_info("x")
            self.assertEqual((caught.exception.code, caught.exception.errno), ("not_found", errno.ENOENT))
            self.assertTrue(caught.exception.from_server)
            self.assertEqual(ctl.reply("snapshot-info", name="x")["ok"], False)
            self.assertEqual(ctl.version()["front_end"], "nbdsnapd")
            self.assertEqual(ctl.state, "connected")

    def test_a_silent_server_times_out_and_the_client_is_dead(self):
        server = self.server(silent)
        ctl = nbdsnap.Client(server.path, timeout=0.2, timeout_name="--timeout")
        start = time.monotonic()
        with self.assertRaises(nbdsnap.Error) as caught:
            ctl.wait_events(0, 0.3)
        elapsed = time.monotonic() - start
        self.assertEqual(caught.exception.code, "timeout")
        self.assertIn("no reply to events-wait within 0.2 s (--timeout)", caught.exception.message)
        self.assertTrue(0.5 <= elapsed < 4, elapsed)
        self.assertEqual(ctl.state, "dead")
        with self.assertRaises(nbdsnap.Error) as later:
            ctl.version()
        self.assertEqual(later.exception.code, "not_connected")
        ctl.close()

    def test_an_nbd_socket_is_named_as_such(self):
        server = self.server(nbd_like)
        with nbdsnap.Client(server.path) as ctl:
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.origins()
        self.assertEqual(caught.exception.code, "wrong_socket")
        self.assertIn(f"{server.path}: this is an NBD socket, not a control socket", caught.exception.message)
        self.assertEqual(nbdsnap.probe_socket_kind(server.path), "nbd")

    def test_a_malformed_reply_ends_the_connection(self):
        server = self.server(lambda conn: (conn.recv(4096), conn.sendall(b"hello\n")))
        with nbdsnap.Client(server.path) as ctl:
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.snapshots()
            self.assertEqual(caught.exception.code, "protocol_error")
            self.assertIn(f"control socket {server.path}: malformed reply to snapshot-list: hello",
                          caught.exception.message)
            self.assertEqual(ctl.state, "dead")

    def test_a_reply_line_without_end_is_refused_past_the_limit_and_a_long_one_arrives_whole(self):
        # A hostile or broken server must not make the client hold more than libnbdsnap would (64 MiB).
        def endless(conn):
            conn.recv(4096)
            block = b"x" * (1 << 20)
            try:
                while True:
                    conn.sendall(block)
            except OSError:
                pass
        server = self.server(endless)
        with nbdsnap.Client(server.path, timeout=60) as ctl:
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.snapshots()
            self.assertEqual((caught.exception.code, caught.exception.errno), ("protocol_error", errno.EPROTO))
            self.assertIn(f"a reply line to snapshot-list longer than {nbdsnap.client.MAXIMUM_REPLY_LINE} bytes",
                          caught.exception.message)
            self.assertEqual(ctl.state, "dead")
        # Just under the limit, in small pieces, is a reply: read in time linear in its length.
        names = ["s%07d" % i for i in range(100000)]
        reply = json.dumps({"ok": True, "snapshots": [{"name": n} for n in names]}).encode() + b"\n"
        self.assertLess(len(reply), nbdsnap.client.MAXIMUM_REPLY_LINE)

        def long_reply(conn):
            conn.recv(4096)
            for start in range(0, len(reply), 4096):
                conn.sendall(reply[start:start + 4096])
            conn.recv(4096)
        server = self.server(long_reply)
        with nbdsnap.Client(server.path, timeout=60) as ctl:
            self.assertEqual(len(ctl.reply("snapshot-list")["snapshots"]), len(names))

    def test_a_reply_of_the_wrong_shape_is_a_protocol_error_naming_the_socket_and_command(self):
        wrong = {"origins": {"origins": 5}, "snapshot-list": {"snapshots": "s1"}, "stats": {"origins": []},
                 "snapshot-info": {}, "cbt-reset": {"generation": 3}, "cbt-map": {"ranges": None},
                 "events-wait": {"events": [1], "last_sequence": 1}, "version": {"version": True}}
        server = self.server(replying(lambda request: dict(wrong[request["command"]], ok=True)))
        calls = {"origins": lambda c: c.origins(), "snapshot-list": lambda c: c.snapshots(),
                 "stats": lambda c: c.stats(), "snapshot-info": lambda c: c.snapshot_info("s1"),
                 "cbt-reset": lambda c: c.cbt_reset("disk"), "cbt-map": lambda c: c.cbt_changed_ranges("disk"),
                 "events-wait": lambda c: c.wait_events(0), "version": lambda c: c.version()}
        for command, call in calls.items():
            with self.subTest(command=command), nbdsnap.Client(server.path) as ctl:
                with self.assertRaises(nbdsnap.Error) as caught:
                    call(ctl)
                self.assertEqual((caught.exception.code, caught.exception.errno), ("protocol_error", errno.EPROTO))
                self.assertIn(f"control socket {server.path}: malformed reply to {command}: ",
                              caught.exception.message)
                self.assertEqual(ctl.state, "dead")

    def test_connecting_to_nothing_fails_with_errno(self):
        with self.assertRaises(nbdsnap.Error) as caught:
            nbdsnap.Client("/nonexistent/control.sock")
        self.assertEqual((caught.exception.code, caught.exception.errno), ("connection_failed", errno.ENOENT))
        with self.assertRaises(nbdsnap.Error) as caught:
            nbdsnap.Client("/" + "x" * 200)
        self.assertEqual(caught.exception.errno, errno.ENAMETOOLONG)

    def test_a_full_listen_backlog_is_waited_out_then_reported_as_a_timeout(self):
        path, listener = self.full_backlog()
        start = time.monotonic()
        with self.assertRaises(nbdsnap.Error) as caught:
            nbdsnap.Client(path, timeout=0.5, timeout_name="--timeout")
        elapsed = time.monotonic() - start
        self.assertEqual((caught.exception.code, caught.exception.errno), ("timeout", errno.ETIMEDOUT))
        self.assertIn("cannot connect within 0.5 s (--timeout): the server accepts no clients",
                      caught.exception.message)
        self.assertTrue(0.45 <= elapsed < 3, elapsed)
        # Room made while the client waits: it connects.
        threading.Timer(0.3, lambda: listener.accept()[0].close()).start()
        with nbdsnap.Client(path, timeout=5) as ctl:
            self.assertEqual(ctl.state, "connected")

    def full_backlog(self):
        """A Unix socket that accepts no clients (listen backlog 0, filled): a server stopped with SIGSTOP."""
        directory = tempfile.mkdtemp(prefix="nbdsnap-py-test.")
        path = os.path.join(directory, "s.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(0)
        queued = []
        self.addCleanup(lambda: ([s.close() for s in queued], listener.close(), os.unlink(path),
                                 os.rmdir(directory)))
        for _ in range(64):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            if s.connect_ex(path) != 0:
                s.close()
                return path, listener
            queued.append(s)
        self.fail("the listen backlog never filled")

    def test_changed_ranges_follow_the_pages_and_refuse_a_generation_change(self):
        renew = {"on": False}

        def answer(request):
            offset = request.get("offset", 0)
            generation = "g2" if renew["on"] and offset else "g1"
            if offset == 0:
                return {"ok": True, "generation": generation, "ranges": [{"offset": 0, "length": 4096}],
                        "more": True, "next_offset": 65536}
            return {"ok": True, "generation": generation, "ranges": [{"offset": 65536, "length": 4096}],
                    "more": False, "next_offset": 1 << 20}
        server = self.server(replying(answer))
        with nbdsnap.Client(server.path) as ctl:
            whole = ctl.cbt_changed_ranges("disk")
            self.assertEqual(whole["ranges"], [{"offset": 0, "length": 4096}, {"offset": 65536, "length": 4096}])
            renew["on"] = True
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.cbt_changed_ranges("disk")
            self.assertEqual(caught.exception.code, "generation_changed")

    def test_whole_raw_map_joins_the_runs_and_a_page_that_does_not_move_on_is_refused(self):
        stuck = {"on": False}

        def answer(request):
            offset = request.get("offset", 0)
            if offset == 0:
                return {"ok": True, "generation": "g1", "offset": 0, "length": 65536, "runs": [[0, 1]],
                        "more": True, "next_offset": 0 if stuck["on"] else 65536}
            return {"ok": True, "generation": "g1", "offset": 65536, "length": 65536, "runs": [[3, 1]],
                    "more": False, "next_offset": 131072}
        server = self.server(replying(answer))
        with nbdsnap.Client(server.path) as ctl:
            whole = ctl.cbt_whole_raw_map("disk")
            self.assertEqual(whole["runs"], [[0, 1], [3, 1]])
            self.assertEqual((whole["offset"], whole["length"], whole["more"]), (0, 131072, False))
            stuck["on"] = True
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.cbt_whole_raw_map("disk")
            self.assertEqual(caught.exception.code, "protocol_error")

    def test_a_cbt_map_page_that_breaks_the_paging_rules_fails_the_call_and_keeps_the_connection(self):
        script = {"first": None, "following": None}

        def answer(request):
            if request["command"] == "version":
                return {"ok": True, "version": "0.1.0"}
            page = script["following"] if request.get("offset", 0) and script["following"] else script["first"]
            return dict(page, ok=True)
        server = self.server(replying(answer))
        base = {"generation": "g1", "block_size": 4096, "device_size": 1 << 20, "more": False,
                "next_offset": 1 << 20}

        def ranges(*pairs):
            return [{"offset": offset, "length": length} for offset, length in pairs]

        with nbdsnap.Client(server.path) as ctl:
            def refused(words, first, following=None, **query):
                script["first"], script["following"] = first, following
                with self.assertRaises(nbdsnap.Error) as caught:
                    ctl.cbt_changed_ranges("disk", **query)
                self.assertEqual(caught.exception.code, "protocol_error")
                self.assertIn(words, caught.exception.message)
                ctl.version()  # still connected
            refused("starts before the end of the range before it",
                    dict(base, ranges=ranges((8192, 4096), (4096, 4096))))
            refused("sorted and disjoint", dict(base, ranges=ranges((0, 8192), (4096, 8192))))
            refused("is empty", dict(base, ranges=ranges((4096, 0))))
            refused("ends past the device's 1048576 bytes", dict(base, ranges=ranges(((1 << 20) - 4096, 8192))))
            refused("ends past 2^64", dict(base, ranges=ranges(((1 << 64) - 11, 4096))))
            refused("outside the bytes asked for [0, 4096)", dict(base, ranges=ranges((0, 8192))), length=4096)
            refused("ends past the page's next_offset 4096",
                    dict(base, ranges=ranges((0, 8192)), more=True, next_offset=4096))
            refused("block_size changed from 4096 to 65536",
                    dict(base, ranges=ranges((0, 4096)), more=True, next_offset=4096),
                    dict(base, block_size=65536, ranges=ranges((8192, 4096))))
            script["first"], script["following"] = dict(base, ranges=ranges((8192, 4096), (0, 4096))), None
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.cbt_map("disk")
            self.assertEqual(caught.exception.code, "protocol_error")
            # What holds: adjacent ranges, and a server that does not page sending its whole map.
            script["first"] = dict(base, ranges=ranges((0, 4096), (4096, 4096), (65536, 4096)))
            self.assertEqual(len(ctl.cbt_changed_ranges("disk")["ranges"]), 3)
            script["first"] = {"generation": "g1", "ranges": ranges((0, 4096), (65536, 4096))}
            self.assertEqual(len(ctl.cbt_map("disk", offset=32768, length=4096)["ranges"]), 2)

    def test_a_cbt_raw_map_page_whose_runs_do_not_cover_its_blocks_fails_the_call(self):
        script = {"page": None}
        server = self.server(replying(lambda request: dict(script["page"], ok=True)))
        base = {"generation": "g1", "block_size": 4096, "device_size": 10000 + 8192, "offset": 8192,
                "length": 10000, "more": False, "next_offset": 10000 + 8192}
        asked = 8192 + 100
        with nbdsnap.Client(server.path) as ctl:
            def refused(words, **changes):
                script["page"] = dict(base, **changes)
                for call in (ctl.cbt_whole_raw_map, ctl.cbt_raw_map):
                    with self.assertRaises(nbdsnap.Error) as caught:
                        call("disk", offset=asked)
                    self.assertEqual(caught.exception.code, "protocol_error")
                    self.assertIn(words, caught.exception.message)
            script["page"] = dict(base, runs=[[0, 2], [3, 1]])  # 3 blocks for 10000 bytes: the last partial
            self.assertEqual(ctl.cbt_whole_raw_map("disk", offset=asked)["runs"], [[0, 2], [3, 1]])
            refused("its runs cover 2 blocks of 4096 bytes, but [8192, 18192) spans 3", runs=[[0, 2]])
            refused("run 1 covers no block", runs=[[0, 2], [1, 0], [3, 1]])
            refused("not a multiple of its block_size", runs=[[0, 3]], offset=8192 + 1024)
            refused("is not the start of the block holding the offset asked for (8292)", runs=[[0, 4]],
                    offset=4096, length=10000 + 4096)
            refused("its length 4096 is not next_offset - offset (10000)", runs=[[0, 3]], length=4096)
            refused("more than 2^64 blocks", runs=[[0, (1 << 64) - 1], [1, 2]])

    def test_arguments_without_a_utf8_or_json_form_are_refused_before_sending(self):
        requests = []
        server = self.server(replying(lambda request: (requests.append(request), {"ok": True, "snapshots": []})[1]))
        with nbdsnap.Client(server.path) as ctl:
            for name in ("lone \ud800 surrogate", "\udfff"):
                with self.assertRaises(nbdsnap.Error) as caught:
                    ctl.reply("snapshot-info", name=name)
                self.assertEqual((caught.exception.code, caught.exception.errno), ("invalid_request", errno.EINVAL))
                self.assertIn("snapshot-info: the arguments cannot be sent as JSON", caught.exception.message)
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.reply("snapshot-list", x=float("nan"))
            self.assertEqual(caught.exception.code, "invalid_request")
            self.assertEqual(ctl.state, "connected")  # nothing was sent: the connection goes on
            ctl.reply("snapshot-list", name="caf\u00e9 \U0001F600")  # any other text goes, as UTF-8
        self.assertEqual(requests, [{"command": "snapshot-list", "name": "caf\u00e9 \U0001F600"}])

    def test_tls_addresses_need_x509_files_and_psk_is_refused_clearly(self):
        with self.assertRaises(nbdsnap.Error) as caught:
            nbdsnap.Client("tls://agent@127.0.0.1:1", tls_psk="/nowhere/keys.psk")
        self.assertEqual(caught.exception.code, "not_supported")
        self.assertIn("TLS-PSK", caught.exception.message)
        with self.assertRaises(nbdsnap.Error) as caught:
            nbdsnap.Client("tls://127.0.0.1:1")
        self.assertEqual(caught.exception.code, "invalid_request")
        with self.assertRaises(nbdsnap.Error) as caught:
            nbdsnap.Client("tls://127.0.0.1", tls_certificates="/nowhere")
        self.assertIn("no port", caught.exception.message)
        with self.assertRaises(nbdsnap.Error) as caught:
            nbdsnap.Client("tls://127.0.0.1:1", tls_certificates="/nowhere")
        self.assertEqual(caught.exception.code, "bad_credentials")
        self.assertIn("/nowhere/ca-cert.pem", caught.exception.message)

    def test_calls_from_many_threads_each_get_their_own_reply(self):
        server = self.server(replying(lambda request: {"ok": True, "version": request["name"]}))
        mismatches = []
        with nbdsnap.Client(server.path) as ctl:
            def hammer(t):
                for i in range(100):
                    tag = f"{t}.{i}"
                    if ctl.call("version", name=tag)["version"] != tag:
                        mismatches.append(tag)
            threads = [threading.Thread(target=hammer, args=(t,)) for t in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self.assertEqual(mismatches, [])

    def test_a_server_replaying_old_events_has_each_delivered_once_in_sequence_order(self):
        # attack11: a server answering every events-wait with events 1 and 2 had them called back for ever.
        def events_wait(request):
            if request["after"] >= 2:
                time.sleep(request["timeout_ms"] / 1000)
            return {"ok": True, "events": [{"sequence": 2}, {"sequence": 1}, {"sequence": 2}], "last_sequence": 2}
        server = self.server(replying(events_wait))
        with nbdsnap.Client(server.path) as ctl:
            seen = []
            end = ctl.watch_events(lambda e: seen.append(e["sequence"]), timeout=0.2, poll=0.02)
            self.assertEqual((seen, end["position"], end["delivered"]), ([2], 2, 1))
            stream = ctl.events(0, wait=0.02)
            self.assertEqual([stream.next(0.02) for _ in range(3)], [{"sequence": 2}, None, None])

    def test_watch_events_filters_resumes_from_its_position_and_stops(self):
        log = [{"sequence": n, "type": kind, "snapshot": name} for n, kind, name in
               [(1, "snapshot_created", "a"), (2, "snapshot_taken", "a"), (3, "snapshot_taken", "b"),
                (4, "low_free_space", "b"), (5, "snapshot_taken", "c")]]
        asked = []

        def events_wait(request):
            asked.append(request["after"])
            if request["timeout_ms"] > 0:
                time.sleep(request["timeout_ms"] / 1000)  # nothing new: the server waits out the wait
            return {"ok": True, "events": [e for e in log if e["sequence"] > request["after"]][:2],
                    "last_sequence": 5}

        server = self.server(replying(events_wait))
        with nbdsnap.Client(server.path) as ctl:
            seen = []
            end = ctl.watch_events(lambda e: seen.append(e["snapshot"]) or e["snapshot"] != "b",
                                   types=["snapshot_taken"], poll=0.01)
            self.assertEqual(seen, ["a", "b"])
            self.assertEqual(end, {"reason": "callback_stopped", "position": 3, "delivered": 2})
            self.assertEqual(asked, [0, 2])  # pages of two, each asked after the last sequence read
            stop = threading.Event()
            stop.set()
            self.assertEqual(ctl.watch_events(print, after=5, stop=stop)["reason"], "stop_requested")
            start = time.monotonic()
            end = ctl.watch_events(lambda e: self.fail(f"{e}"), origin="elsewhere", after=3, timeout=0.2, poll=0.05)
            self.assertEqual((end["reason"], end["position"], end["delivered"]), ("timed_out", 5, 0))
            self.assertLess(time.monotonic() - start, 2)

    def test_every_time_argument_refuses_nan_infinity_and_negatives_as_invalid_request(self):
        asked = []

        def events_wait(request):
            asked.append(request["timeout_ms"])
            return {"ok": True, "events": [], "last_sequence": 0}
        server = self.server(replying(events_wait))
        with nbdsnap.Client(server.path, timeout=2) as ctl:
            stop = threading.Event()  # ends a watch that took a NaN for a bound (it would never time out)
            threading.Timer(1.0, stop.set).start()
            calls = {
                "wait_events: wait": lambda bad: ctl.wait_events(0, bad),
                "watch_events: timeout": lambda bad: ctl.watch_events(print, timeout=bad, poll=0.01, stop=stop),
                "watch_events: poll": lambda bad: ctl.watch_events(print, timeout=0.1, poll=bad, stop=stop),
                "events: wait": lambda bad: ctl.events(0, bad),
                "Client: timeout": lambda bad: nbdsnap.Client(server.path, timeout=bad),
            }
            for name, call in calls.items():
                for bad in (math.nan, math.inf, -math.inf, -1, "soon"):
                    with self.subTest(name=name, value=bad):
                        with self.assertRaises(nbdsnap.Error) as caught:
                            call(bad)
                        self.assertEqual((caught.exception.code, caught.exception.errno),
                                         ("invalid_request", errno.EINVAL))
                        self.assertIn(f"{name}={bad!r}: give a finite number of seconds", caught.exception.message)
            self.assertEqual(ctl.state, "connected")
            for bad in (0, 86401):
                with self.assertRaises(nbdsnap.Error) as caught:
                    nbdsnap.Client(server.path, timeout=bad)
                self.assertIn("more than 0 and at most 86400", caught.exception.message)
            # Beyond their documented ranges, the waits are cut to them: 24 h, and a poll of 10 ms .. 60 s.
            ctl.wait_events(0, 1e9)
            ctl.watch_events(print, timeout=0.05, poll=0)
            self.assertEqual(asked[:2], [86400000, 10])

    def test_a_server_that_stops_during_an_event_wait_is_reported_with_where_to_resume(self):
        def stopping(conn):
            # As nbdsnapd on SIGTERM: the wait ends at once with no event, then the connection closes.
            stream = conn.makefile("rwb")
            for line in stream:
                request = json.loads(line)
                reply = {"ok": True, "events": [], "last_sequence": 7}
                if request["after"] == 5:
                    reply["events"] = [{"sequence": 6, "type": "snapshot_taken", "snapshot": "a"}]
                stream.write(json.dumps(reply).encode() + b"\n")
                stream.flush()
                if request["timeout_ms"] > 0 and request["after"] != 5:
                    time.sleep(0.1)
                    return
        server = self.server(stopping)
        with nbdsnap.Client(server.path, timeout=2) as ctl:
            self.assertEqual(ctl.wait_events(7, 0)["events"], [])  # no wait asked: nothing to tell
            start = time.monotonic()
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.wait_events(7, 20)
            self.assertLess(time.monotonic() - start, 3)
            self.assertEqual((caught.exception.code, caught.exception.position), ("connection_lost", 7))
            self.assertIn("the server closed the connection", caught.exception.message)
            self.assertIn("connect again and resume with after=7", caught.exception.message)
            self.assertEqual(ctl.state, "dead")
        with nbdsnap.Client(server.path, timeout=2) as ctl:
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.watch_events(lambda event: None, after=5, timeout=20, poll=5)
            self.assertEqual(caught.exception.position, 6)
            self.assertIn("resume with after=6", caught.exception.message)
        with nbdsnap.Client(server.path, timeout=2) as ctl:
            with self.assertRaises(nbdsnap.Error) as caught:
                next(ctl.events(after=7, wait=20))
            self.assertEqual(caught.exception.position, 7)


if __name__ == "__main__":
    unittest.main()
