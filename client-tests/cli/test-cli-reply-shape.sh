#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-reply-shape.sh — a control reply of the wrong shape fails every command family with exit status 4,
# code protocol_error, and a message naming the call and the field, instead of being read as empty (a server
# answering {"ok":true,"origins":5} made `nbdsnap origins` print an empty table and exit 0). The server is a
# small Python fake on a Unix socket that answers each command with one wrongly shaped reply; the same fake
# answering with replies of the right shape (extra fields included) is read as before.
# Usage: test-cli-reply-shape.sh NBDSNAP
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"

# fake_control MODE: a control socket at $ctl whose replies are wrong ("bad") or right ("good") in shape.
fake_control() {
  "$PY" - "$ctl" "$1" <<'PYTHON' >"$dir/fake-$1.log" 2>&1 &
import json, os, socket, sys, threading
path, mode = sys.argv[1], sys.argv[2]
origin = {"name": "disk", "size": 1048576, "read_only": False, "generation": "g", "change_number": 1,
          "tracking_block_size": 65536, "chunk_size": 65536, "snapshot": "", "clients": 0, "uri": "", "extra": [1]}
snapshot = {"name": "s", "state": "taken", "writable": False, "origins": ["disk"],
            "images": [{"origin": "disk", "export": "disk@s", "uri": ""}], "storage": [], "storage_total": 0,
            "storage_used": 0, "storage_limit": 0, "chunks_copied": 0, "memory_bytes": 0, "corruption_reason": "",
            "origin_errors": [], "taken_unix_ms": 1, "take_hold_us": 0, "take_drain_us": 0}
good = {
    "version": {"version": "fake", "protocol": 1, "front_end": "nbdsnapd"},
    "origins": {"origins": [origin]},
    "origin-info": {"origin": origin},
    "cbt-info": {"cbt": {"origin": "disk", "generation": "g", "change_number": 1, "block_size": 65536,
                         "block_count": 16, "device_size": 1048576, "checkpoints": {"c": 1}}},
    "cbt-map": {"origin": "disk", "generation": "g", "change_number": 1, "block_size": 65536,
                "device_size": 1048576, "ranges": [{"offset": 0, "length": 65536}], "next_offset": 1048576,
                "more": False},
    "checkpoints": {"generation": "g", "checkpoints": [{"name": "c", "number": 1, "taken_unix_ms": 1}]},
    "snapshot-info": {"snapshot": snapshot},
    "snapshot-list": {"snapshots": [snapshot]},
    "events-wait": {"events": [{"sequence": 1, "time_unix_ms": 1, "type": "snapshot_taken", "snapshot": "s"}],
                    "last_sequence": 1},
    "stats": {"origins": [{"name": "disk", "writes": 0}], "snapshots": []},
}
bad = {
    "version": {"version": 1},
    "origins": {"origins": 5},
    "origin-info": {"origin": {"name": "disk", "size": "1M"}},
    "cbt-info": {"cbt": [1]},
    "cbt-map": {"ranges": [{"offset": 0, "length": "64K"}], "more": False},
    "checkpoints": {"checkpoints": {"c": 1}},
    "snapshot-info": {"snapshot": {"name": "s", "images": "disk@s"}},
    "snapshot-list": {},
    "events-wait": {"events": [{"type": "snapshot_taken"}], "last_sequence": 1},
    "stats": {"origins": [{"name": "disk", "writes": -1}], "snapshots": []},
}
replies = good if mode == "good" else bad
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(8)
def serve(connection):
    with connection, connection.makefile("rwb") as stream:
        for line in stream:
            command = json.loads(line)["command"]
            reply = dict(replies.get(command, {}), ok=True)
            stream.write(json.dumps(reply).encode() + b"\n")
            stream.flush()
while True:
    connection, _ = listener.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
PYTHON
  fake_pid=$!
  track_pid "$fake_pid"
  for ((i = 0; i < 100; i++)); do
    [[ -S $ctl ]] && return 0
    _nap 0.1
  done
  fail "the fake control socket did not appear: $(cat "$dir/fake-$1.log")"
}
stop_fake() {
  kill "$fake_pid" && wait "$fake_pid" 2>/dev/null || true
  rm -f "$ctl"
}

fake_control bad
# COMMAND-LINE | the request | the field named
while IFS='|' read -r words request field; do
  read -ra args <<<"$words"
  run_cli 4 "${args[@]}"
  expect_err "^nbdsnap: server's reply to $request: '$field' is (.*, expected .*|missing); is the server \\(nbdsnapd or the nbdkit filter\\) the same version as nbdsnap"
  [[ -z $out ]] || fail "nbdsnap $words printed something from a wrongly shaped reply: $out"
  run_cli 4 --json "${args[@]}"
  [[ $(jq_out .error.code) == protocol_error ]] || fail "--json $words: $out"
done <<'CASES'
version|version|version
origins|origins|origins
origin info disk|origin-info|origin.size
cbt info disk|cbt-info|cbt
cbt map disk|cbt-map|ranges\[0\].length
checkpoints disk|checkpoints|checkpoints
snapshot info s|snapshot-info|snapshot.images
snapshot list|snapshot-list|snapshots
events|events-wait|events\[0\].sequence
stats|stats|origins\[0\].writes
CASES
stop_fake
pass "a wrongly shaped reply fails each command family with exit 4, protocol_error, the call and the field named"

fake_control good
for words in "version" "origins" "origin info disk" "cbt info disk" "cbt map disk" "checkpoints disk" \
  "snapshot info s" "snapshot list" "events" "stats"; do
  read -ra args <<<"$words"
  run_cli 0 "${args[@]}"
done
run_cli 0 origins
expect_out "^disk "
stop_fake
pass "replies of the protocol's shape, with fields added, are read as before"
