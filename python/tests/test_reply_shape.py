#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""test_reply_shape.py — a successful reply whose fields are not of the protocol's types (reply_shapes.json,
the table libnbdsnap compiles in) fails the call with Error("protocol_error"), naming the command and the
field, before anything reads it, whichever call asked (typed, call(), reply()); the client is then dead.
Replies of the protocol's shape, with fields added or optional ones left out, pass. The cases and their
wording are libnbdsnap's (libnbdsnap/tests/reply_shape_test.cpp): both clients walk one table the same way.
Run: python3 -m unittest."""
import errno
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nbdsnap  # noqa: E402
import test_client as helpers  # noqa: E402  (its FakeServer; imported as a module so its tests run once)
from nbdsnap.reply_shape import reply_shape_problem  # noqa: E402


class ReplyShapeTest(unittest.TestCase):
    def serve(self, answer):
        server = helpers.FakeServer(helpers.replying(answer))
        self.addCleanup(server.stop)
        return server

    def problem_of(self, command, reply):
        """What call(command) answered with `reply` (ok added) fails with, "" if it succeeds."""
        server = self.serve(lambda request: dict(reply, ok=True))
        with nbdsnap.Client(server.path) as ctl:
            try:
                ctl.call(command)
                return ""
            except nbdsnap.Error as e:
                self.assertEqual((e.code, e.errno, ctl.state), ("protocol_error", errno.EPROTO, "dead"))
                prefix = f"control socket {server.path}: malformed reply to {command}: "
                self.assertTrue(e.message.startswith(prefix), e.message)
                return e.message[len(prefix):].split("; is the server ")[0]

    def test_a_number_for_the_origins_list_is_named_with_the_type_expected(self):
        self.assertEqual(self.problem_of("origins", {"origins": 5}), "'origins' is a number, expected an array")

    def test_the_list_or_object_a_reply_is_made_of_must_be_there(self):
        self.assertEqual(self.problem_of("origins", {}), "'origins' is missing")
        self.assertEqual(self.problem_of("snapshot-info", {}), "'snapshot' is missing")
        self.assertEqual(self.problem_of("events-wait", {"last_sequence": 3}), "'events' is missing")
        self.assertEqual(self.problem_of("stats", {"origins": []}), "'snapshots' is missing")

    def test_a_field_deep_in_a_list_is_named_with_its_index(self):
        cases = [
            ("snapshot-list", {"snapshots": [{"name": "a"}, {"name": "b", "images": [{"uri": 7}]}]},
             "'snapshots[1].images[0].uri' is a number, expected a string"),
            ("events-wait", {"events": [{"sequence": 1}, {"type": "x"}]}, "'events[1].sequence' is missing"),
            ("cbt-map", {"ranges": [{"offset": 0, "length": -4096}]},
             "'ranges[0].length' is a number, expected a number of 0 or more"),
            ("cbt-map", {"ranges": [{"offset": 0, "length": True}]},
             "'ranges[0].length' is a boolean, expected a number of 0 or more"),
            ("cbt-map", {"ranges": [{"offset": 0, "length": 4096.0}]},
             "'ranges[0].length' is a number that is not a 64-bit integer, expected a number of 0 or more"),
            ("cbt-map", {"ranges": [{"offset": 0, "length": 1 << 64}]},
             "'ranges[0].length' is a number that is not a 64-bit integer, expected a number of 0 or more"),
            ("cbt-raw-map", {"runs": [[1, "2"]], "next_offset": 0},
             "'runs[0]' is an array, expected an array of two numbers of 0 or more"),
            # A run has no offset of its own: one skipped moved every later run onto other blocks.
            ("cbt-raw-map", {"runs": [[1, 1], [1], [2, 255]], "next_offset": 0},
             "'runs[1]' is an array, expected an array of two numbers of 0 or more"),
            ("cbt-raw-map", {"runs": [[1, 1, 7]], "next_offset": 0},
             "'runs[0]' is an array, expected an array of two numbers of 0 or more"),
            ("cbt-info", {"cbt": {"checkpoints": {"s0": 3, "s1": "5"}}},
             "'cbt.checkpoints.s1' is a string, expected a number of 0 or more"),
            ("snapshot-info", {"snapshot": {"name": "s", "taken_unix_ms": 1 << 63}},
             "'snapshot.taken_unix_ms' is a number, expected an integer"),
            ("snapshot-info", {"snapshot": {"name": "s", "images": [{"origin": "d", "clients": "3"}]}},
             "'snapshot.images[0].clients' is a string, expected a number of 0 or more"),
            ("snapshot-info", {"snapshot": {"name": "s", "origin_errors": [{"origin": "d", "errno": "28"}]}},
             "'snapshot.origin_errors[0].errno' is a string, expected an integer"),
            ("stats", {"origins": [], "snapshots": [{"name": "s", "images": [{"export": "d@s", "reads": "7"}]}]},
             "'snapshots[0].images[0].reads' is a string, expected a number of 0 or more"),
            ("cbt-reset", {}, "'generation' is missing"),
            ("events-wait", {"events": []}, "'last_sequence' is missing"),
            ("origin-info", {"origin": {"name": "d", "read_only": "no"}},
             "'origin.read_only' is a string, expected true or false"),
            ("origins", {"origins": [3]}, "'origins[0]' is a number, expected an object"),
        ]
        for command, reply, problem in cases:
            with self.subTest(command=command, reply=reply):
                self.assertEqual(self.problem_of(command, reply), problem)

    def test_replies_of_the_protocol_pass_with_extra_fields_and_optional_fields_left_out(self):
        cases = [
            ("origins", {"origins": [{"name": "d", "size": 1048576, "read_only": False, "generation": "g",
                                      "change_number": 3, "snapshot": "", "clients": 0, "uri": "nbd+unix:///d",
                                      "new_field": [1]}]}),
            ("snapshot-info", {"snapshot": {"name": "s", "state": "taken", "origins": ["d"],
                                            "images": [{"origin": "d", "export": "d@s", "uri": ""}],
                                            "storage": [{"path": "/x", "offset": 0, "size": 8, "created": True,
                                                         "sparse": False}],
                                            "taken_unix_ms": -1, "origin_errors": []}}),
            ("cbt-info", {"cbt": {"checkpoints": {"s0": 3, "s1": 5}}}),
            ("cbt-raw-map", {"runs": [[0, 16], [2, 1]], "checkpoints": [{"name": "c", "number": 2,
                                                                         "taken_unix_ms": 5}],
                             "more": False, "next_offset": 0}),
            ("version", {"version": "1.0", "protocol": 1}),
            ("snapshot-destroy", {}),
            ("a-command-of-a-newer-server", {"x": 5}),
        ]
        for command, reply in cases:
            with self.subTest(command=command):
                self.assertEqual(self.problem_of(command, reply), "")

    def test_a_reply_nested_without_bound_is_refused_before_it_is_parsed(self):
        # json.loads recursed: 1,000 levels raised RecursionError out of every call, the client left connected;
        # libnbdsnap's call() crashed on 100,000 (attack11). Strings holding brackets do not count.
        for depth in (65, 1000, 200000):
            with self.subTest(depth=depth):
                line = b'{"ok":true,"version":"1","x":' + b"[" * depth + b"]" * depth + b"}\n"
                raw = helpers.FakeServer(lambda conn, line=line: (conn.recv(4096), conn.sendall(line)))
                self.addCleanup(raw.stop)
                with nbdsnap.Client(raw.path) as ctl:
                    with self.assertRaises(nbdsnap.Error) as caught:
                        ctl.version()
                    self.assertEqual((caught.exception.code, ctl.state), ("protocol_error", "dead"))
                    self.assertIn("malformed reply to version: the reply nests lists and objects deeper than 64 "
                                  "levels", caught.exception.message)
        self.assertEqual(self.problem_of("version", {"version": "[" * 100, "x": [[[1]]]}), "")

    def test_nan_and_infinity_are_no_json(self):
        raw = helpers.FakeServer(lambda conn: (conn.recv(4096), conn.sendall(b'{"ok":true,"version":"1","x":NaN}\n')))
        self.addCleanup(raw.stop)
        with nbdsnap.Client(raw.path) as ctl:
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.version()
            self.assertEqual(caught.exception.code, "protocol_error")

    def test_a_typed_call_refuses_a_cbt_range_it_would_have_read_as_no_change(self):
        # The second page's range has a negative length: read tolerantly, the joined map held [1 MiB, -4096),
        # which a backup agent summing or looping over lengths copies as nothing.
        pages = []

        def answer(request):
            pages.append(request)
            page = {"ok": True, "generation": "g", "block_size": 65536, "device_size": 4 << 20}
            if len(pages) == 1:
                return dict(page, ranges=[{"offset": 0, "length": 65536}], more=True, next_offset=1 << 20)
            return dict(page, ranges=[{"offset": 1 << 20, "length": -4096}], more=False, next_offset=4 << 20)
        server = self.serve(answer)
        with nbdsnap.Client(server.path) as ctl:
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.cbt_changed_ranges("disk")
            self.assertEqual(caught.exception.code, "protocol_error")
            self.assertIn("malformed reply to cbt-map: 'ranges[0].length' is a number, expected a number of 0 or "
                          "more", caught.exception.message)
            self.assertEqual(len(pages), 2)

    def test_reply_hands_on_refusals_but_checks_successful_replies(self):
        server = self.serve(lambda request: {"ok": False, "error": {"code": "not_found", "message": "no",
                                                                    "errno": errno.ENOENT}}
                            if request["command"] == "origin-info" else {"ok": True, "origins": "d"})
        with nbdsnap.Client(server.path) as ctl:
            self.assertFalse(ctl.reply("origin-info", name="x")["ok"])
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.reply("origins")
            self.assertEqual(caught.exception.code, "protocol_error")
            self.assertEqual(ctl.state, "dead")

    def test_a_refusal_of_another_shape_raises_an_error_of_the_documented_types(self):
        server = self.serve(lambda request: {"ok": False, "error": {"code": {"a": 1}, "errno": "x", "message": [1]}})
        with nbdsnap.Client(server.path) as ctl:
            with self.assertRaises(nbdsnap.Error) as caught:
                ctl.origins()
            e = caught.exception
            self.assertEqual((e.code, e.errno, e.message, e.source), ("unknown", 0, "(no message)", "server"))

    def test_the_table_is_well_formed_and_names_every_command_the_client_wraps(self):
        path = os.path.join(os.path.dirname(nbdsnap.__file__), "reply_shapes.json")
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
        wrapped = {"version", "origins", "origin-info", "origin-attach", "cbt-info", "cbt-map", "cbt-raw-map",
                   "cbt-reset", "checkpoints", "snapshot-create", "snapshot-take", "snapshot-append-storage",
                   "snapshot-info", "snapshot-list", "events-wait", "stats"}
        self.assertEqual(set(table["commands"]), wrapped)
        self.assertEqual(reply_shape_problem("origins", [1]), "the reply is an array, expected an object")


if __name__ == "__main__":
    unittest.main()
