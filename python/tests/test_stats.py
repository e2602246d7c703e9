#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""test_stats.py — Client.stats() returns the `stats` reply's origins and snapshots, and sparse storage is asked
for only for files created at a size (a fake server records the requests). Run: python3 -m unittest."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nbdsnap  # noqa: E402
import test_client as helpers  # noqa: E402  (its FakeServer; imported as a module so its tests run once)

STATS = {"origins": [{"name": "disk0", "writes": 3, "bytes_written": 12288, "chunks_copied": 1}],
         "snapshots": [{"name": "s1", "state": "taken", "storage_free": 786432,
                        "images": [{"origin": "disk0", "export": "disk0@s1", "reads": 5}]}]}


class StatsTest(unittest.TestCase):
    def recording_server(self, reply):
        requests = []

        def answer(request):
            requests.append(request)
            return dict(reply, ok=True)
        server = helpers.FakeServer(helpers.replying(answer))
        self.addCleanup(server.stop)
        return server, requests

    def test_stats_returns_origins_and_snapshots(self):
        server, requests = self.recording_server(STATS)
        with nbdsnap.Client(server.path) as client:
            stats = client.stats()
        self.assertEqual(requests[-1], {"command": "stats"})
        self.assertEqual(stats["origins"][0]["writes"], 3)
        self.assertEqual(stats["snapshots"][0]["images"][0]["reads"], 5)

    def test_sparse_is_sent_only_for_files_created_at_a_size(self):
        server, requests = self.recording_server({"snapshot": {"name": "s", "state": "created"}})
        with nbdsnap.Client(server.path) as client:
            client.snapshot_create("s", ["a"], storage=[("/var/tmp/new.diff", 1 << 20), ("/dev/sdz", 0)], sparse=True)
            self.assertEqual(requests[-1]["storage"], [{"path": "/var/tmp/new.diff", "size": 1 << 20, "sparse": True},
                                                       {"path": "/dev/sdz", "size": 0}])
            client.snapshot_create("s", ["a"], storage=[("/var/tmp/new.diff", 1 << 20)])
            self.assertNotIn("sparse", requests[-1]["storage"][0])
            client.snapshot_append_storage("s", "/var/tmp/more.diff", 4096, sparse=True)
            self.assertEqual(requests[-1], {"command": "snapshot-append-storage", "name": "s",
                                            "path": "/var/tmp/more.diff", "size": 4096, "sparse": True})


if __name__ == "__main__":
    unittest.main()
