# SPDX-License-Identifier: BSD-3-Clause
"""python3 -m nbdsnap [--expect-error] SOCKET 'JSON' ['JSON'...] — sends control requests on one connection
and prints each reply line. Exits 1 when a reply's "ok" is not the one expected (true; false with
--expect-error), 4 when the client fails (timeout, connection). For shell scripts and tests."""
import json
import sys

from .client import Client, Error


def main(argv):
    expect_ok = True
    if argv and argv[0] == "--expect-error":
        expect_ok, argv = False, argv[1:]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    status = 0
    try:
        with Client(argv[0]) as client:
            for text in argv[1:]:
                request = json.loads(text)
                command = request.pop("command")
                reply = client.reply(command, **request)
                print(json.dumps(reply, separators=(",", ":"), ensure_ascii=False), flush=True)
                if reply.get("ok") is not expect_ok:
                    print(f"control request {text} answered {json.dumps(reply)}", file=sys.stderr)
                    status = 1
    except Error as e:
        print(f"nbdsnap: {e}", file=sys.stderr)
        return 4
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
