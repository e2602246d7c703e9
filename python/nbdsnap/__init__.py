# SPDX-License-Identifier: BSD-3-Clause
"""nbdsnap — a Python client of the nbdsnap control protocol (docs/control.md), for backup agents.

Snapshots, origins, change block tracking (maps, raw maps, checkpoints), events and difference storage of
nbdsnapd or of nbdkit with the nbdsnap filter, over the control socket. Read the images themselves with
python3-libnbd (``import nbd``)::

    import nbd, nbdsnap

    with nbdsnap.Client("/run/nbdsnap/control.sock") as ctl:
        ctl.snapshot_create("s1", ["disk"], storage=[("/var/lib/nbdsnap/s1.diff", 1 << 30)])
        snapshot = ctl.snapshot_take("s1")
        h = nbd.NBD()
        h.add_meta_context("base:allocation")
        h.connect_uri(snapshot["images"][0]["uri"])
        ...
        ctl.snapshot_destroy("s1")

The package is pure Python over the JSON protocol (docs/libnbdsnap.md says why), the same operations as the
C++ library libnbdsnap. Errors are raised as nbdsnap.Error, which carries the server's code, errno and
message, or the client's own code (timeout, connection_failed, connection_lost, wrong_socket,
protocol_error, not_connected, generation_changed).
"""
from .client import Client, Error, EventStream, probe_socket_kind, LIBRARY_VERSION

__all__ = ["Client", "Error", "EventStream", "probe_socket_kind", "LIBRARY_VERSION"]
__version__ = LIBRARY_VERSION
