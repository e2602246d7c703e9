# SPDX-License-Identifier: BSD-3-Clause
"""client.py — the Client handle of the nbdsnap package: one connection to a control socket, its states,
one request/reply exchange per call (under a lock: replies come in order on a connection), and every wait
bounded by the timeout.

States (as libnbdsnap's): "connected" after the constructor; "dead" after a call that cannot know where the
conversation stands (no reply in time, a broken connection, a reply that is not the protocol's), since a
late reply would be taken for the next call's; "closed" after close(). Calls on a dead or closed client raise
Error("not_connected"). A server's refusal ({"ok": false}) raises Error with source "server" and leaves the
client connected.
"""
import errno as errno_codes
import json
import math
import os
import random
import socket
import ssl
import threading
import time

from .cbt_page import page_problem, pages_disagree
from .reply_shape import reply_nesting_problem, reply_shape_problem

LIBRARY_VERSION = "0.1.0"

NBD_GREETING_MAGIC = b"NBDMAGIC"
MAXIMUM_EVENT_WAIT = 24 * 3600.0  # seconds: the server's bound (docs/control.md)
# An events-wait answered with no event more than EARLY_WAIT_END before its wait was over is looked at: a
# stopping server answers so, then closes the connection, which the client waits up to CLOSE_AFTER_CUT_WAIT for.
EARLY_WAIT_END = 0.02  # seconds
CLOSE_AFTER_CUT_WAIT = 1.0  # seconds
# Ranges per cbt-mark-dirty request when cbt_mark_dirty splits a long list, as libnbdsnap's
# kMarkDirtyRangesPerRequest (nbdsnap/client.h): far below the protocol's 1 MiB line.
MARK_DIRTY_RANGES_PER_REQUEST = 16384


class Error(Exception):
    """A refused command (source "server") or a failure of the client (source "client"). `position`: for an
    event wait that lost its connection (connection_lost), the sequence to resume after on a new connection."""

    position = None

    def __init__(self, code, message, errno=0, source="client"):
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.errno = errno
        self.source = source

    @property
    def from_server(self):
        return self.source == "server"


# bytes: a longer reply line is no reply of the protocol (the server takes request lines of at most 1 MiB, and
# pages what could grow); libnbdsnap's limit too, so a hostile server cannot make either client hold more.
MAXIMUM_REPLY_LINE = 64 << 20
LONGEST_TIMEOUT = 86400.0  # seconds: Client(timeout=), as the CLI's --timeout (more than 0, at most 24 h)
SHORTEST_POLL, LONGEST_POLL = 0.01, 60.0  # seconds: watch_events(poll=), as libnbdsnap's WatchOptions::poll


def _seconds_argument(value, name, lowest=0.0, highest=None, clamp=False, above_lowest=False):
    """`value` as seconds (a float): the one check of every time argument of the package, so that every wait
    has a bound. NaN, infinities, negative values and non-numbers are refused; so are values outside
    lowest .. highest (above lowest only, with above_lowest), unless clamp, which cuts them to the range.
    Raises Error("invalid_request", EINVAL) naming the argument and the allowed range."""
    if clamp:
        allowed = f"0 or more (cut to {lowest:g} .. {highest:g})"
    elif highest is None:
        allowed = f"more than {lowest:g}" if above_lowest else f"{lowest:g} or more"
    else:
        allowed = f"more than {lowest:g} and at most {highest:g}" if above_lowest else f"{lowest:g} .. {highest:g}"
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    out_of_range = (seconds < lowest or (above_lowest and seconds == lowest)
                    or (highest is not None and seconds > highest))
    if not math.isfinite(seconds) or seconds < 0 or (out_of_range and not clamp):
        raise Error("invalid_request", f"{name}={value!r}: give a finite number of seconds, {allowed}",
                    errno_codes.EINVAL)
    return min(max(seconds, lowest), highest) if out_of_range else seconds


def _within(timeout, timeout_name):
    text = f"within {timeout:g} s"
    return f"{text} ({timeout_name})" if timeout_name else text


def _receive_until(sock, deadline, done):
    """Receives until done(bytes) or the deadline; returns what came, or None at end of file."""
    received = b""
    while not done(received):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return None if not received else received
        received += chunk
    return received


def probe_socket_kind(path, greeting_wait=1.0, timeout=2.0):
    """Whether the Unix socket at path is an NBD server's ("nbd"), an nbdsnap control socket ("control") or
    neither ("unknown"): an NBD server greets with "NBDMAGIC" at once, a control server answers a request line
    with a JSON object holding a boolean "ok". Never raises; waits `timeout` seconds at most."""
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            try:
                greeting = _receive_until(sock, min(deadline, time.monotonic() + greeting_wait),
                                          lambda got: len(got) >= len(NBD_GREETING_MAGIC))
            except socket.timeout:
                greeting = b""
            if greeting is None:
                return "unknown"
            if greeting.startswith(NBD_GREETING_MAGIC):
                return "nbd"
            if greeting:
                return "unknown"
            sock.sendall(b'{"command":"version"}\n')
            line = _receive_until(sock, deadline, lambda got: b"\n" in got)
            if line is None:
                return "unknown"
            reply = json.loads(line.split(b"\n", 1)[0])
            return "control" if isinstance(reply, dict) and isinstance(reply.get("ok"), bool) else "unknown"
    except (OSError, ValueError):
        return "unknown"


def parse_tls_address(address):
    """"tls://[USER@]HOST:PORT" (HOST may be [IPv6]) as (user, host, port); raises Error("invalid_request")."""
    def bad(why):
        return Error("invalid_request", f"'{address}': {why} (expected tls://[USER@]HOST:PORT)", errno_codes.EINVAL)
    if not address.startswith("tls://"):
        raise bad("not a tls:// address")
    rest = address[len("tls://"):].rstrip("/")
    user, _, hostport = rest.rpartition("@")
    host, _, port = hostport.rpartition(":")
    if not host or not port:
        raise bad("no port")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise bad(f"bad port '{port}'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return user, host, int(port)


def _tls_context(address, certificates, psk):
    """An ssl context for nbdsnapd's remote control listener with X.509 files in the layout of nbdkit, QEMU and
    libnbd: DIR/ca-cert.pem (the CA that signed the server), and DIR/client-cert.pem + client-key.pem when
    present. TLS-PSK is refused: Python's ssl module has no PSK before 3.13 (Debian 12 ships 3.11)."""
    if psk:
        raise Error("not_supported", f"{address}: TLS-PSK is not available from Python (its ssl module has no PSK "
                    "before Python 3.13; Debian 12 has 3.11): use X.509 (tls_certificates=DIR), or the C++ library "
                    "or the nbdsnap CLI, which do PSK", errno_codes.ENOTSUP)
    if not certificates:
        raise Error("invalid_request", f"{address}: a tls:// address needs tls_certificates=DIR (ca-cert.pem, and "
                    "client-cert.pem and client-key.pem for a client certificate)", errno_codes.EINVAL)
    ca = os.path.join(certificates, "ca-cert.pem")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        cert, key = os.path.join(certificates, "client-cert.pem"), os.path.join(certificates, "client-key.pem")
        if os.path.exists(cert) and os.path.exists(key):
            context.load_cert_chain(cert, key)
    except FileNotFoundError as e:
        raise Error("bad_credentials", f"{e.filename or ca} does not exist", errno_codes.ENOENT) from None
    except (OSError, ssl.SSLError) as e:
        raise Error("bad_credentials", f"{certificates}: cannot load the TLS credentials: {e}",
                    getattr(e, "errno", 0) or errno_codes.EINVAL) from None
    return context



def _storage_entry(path, size, sparse):
    """A storage entry of the control protocol: {path, size}, with sparse only for a file created at a size."""
    entry = {"path": path, "size": size}
    if sparse and size:
        entry["sparse"] = True
    return entry

TLS_CONNECT_ATTEMPTS = 3
TLS_RETRY_WINDOW = 2.0  # seconds
TLS_CLOSED_BY_SERVER = (
    "the server closed the connection during the TLS handshake without refusing it (it may be at its limit of "
    "connections waiting for a TLS handshake, nbdsnapd --control-max-handshakes, during a flood of connections; "
    "or the connection was cut): try again")


class _ClosedInHandshake(Exception):
    """The server closed the connection during the TLS handshake without an alert."""


def _closed_without_alert(error):
    """Whether a failed handshake is the connection ending (end of file, reset) rather than a TLS alert or a
    verification failure of our own."""
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError)):
        return True
    if isinstance(error, ssl.SSLError):
        reason = getattr(error, "reason", "") or ""
        return reason == "UNEXPECTED_EOF_WHILE_READING" or "EOF occurred" in str(error)
    return isinstance(error, OSError) and error.errno in (errno_codes.ECONNRESET, errno_codes.EPIPE)


class Client:
    """A connection to the control socket at `path` (nbdsnapd --control PATH, nbdkit nbdsnap-control=PATH), or
    to nbdsnapd's remote control listener at "tls://[USER@]HOST:PORT" over TLS with X.509 credentials
    (`tls_certificates`: a directory with ca-cert.pem, and client-cert.pem and client-key.pem for a client
    certificate; the server's certificate must name HOST). `tls_psk` (a PSK file) raises Error("not_supported"):
    Python's ssl module has no TLS-PSK before 3.13.

    `timeout` (seconds, more than 0 and at most 86400) bounds connecting and each call's wait for its reply, on
    top of what the command itself waits on the server (wait_events). Every time argument of the package is
    checked alike: NaN, infinities, negative values and non-numbers raise Error("invalid_request") naming the
    argument and its range. Raises Error("connection_failed") with the errno (ENOENT, ECONNREFUSED,
    ENAMETOOLONG...), Error("timeout") (the server's listen backlog stayed full: a stopped or flooded server,
    tried again until the timeout), and for tls:// Error("invalid_request") (a malformed address, no
    credentials) or Error("bad_credentials"). A tls:// connection the server closes during the TLS handshake
    without an alert (not a refusal: a server making room in a flood of connections) is tried again, up to 3
    attempts within about 2 s, then raises Error("connection_failed") with ECONNRESET and a message saying to
    try again; a refusal (an alert) raises at once with ECONNREFUSED. Safe to share between threads: calls
    are serialised.
    """

    def __init__(self, path, timeout=30.0, timeout_name="", tls_certificates=None, tls_psk=None):
        self.path = path
        self.endpoint = f"control socket {path}"
        self.timeout = _seconds_argument(timeout, "Client: timeout", 0.0, LONGEST_TIMEOUT, above_lowest=True)
        self.timeout_name = timeout_name
        self.state = "connected"
        self._lock = threading.Lock()
        self._buffered = bytearray()  # received, not yet returned: appended in place (a long line is no copy per chunk)
        self._replied = False
        self._end_reason = ""
        self._tls = path.startswith("tls://") if isinstance(path, str) else False
        if self._tls:
            self._connect_tls(tls_certificates, tls_psk)
            return
        if not path or len(path.encode()) >= 108:
            raise Error("connection_failed", f"control socket path '{path}' is empty or too long",
                        errno_codes.ENAMETOOLONG)
        self._sock = self._connect_unix(path)

    def _connect_unix(self, path):
        """A connected socket, trying again until the timeout while the listen backlog is full: a non-blocking
        connect to a Unix socket then fails at once with EAGAIN, and poll cannot wait for room (as
        libnbdsnap's connect_unix)."""
        deadline = time.monotonic() + self.timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        pause = 0.005
        while True:
            err = sock.connect_ex(path)
            if err == 0:
                sock.settimeout(self.timeout)
                return sock
            if err == errno_codes.EINTR:
                continue
            if err != errno_codes.EAGAIN:
                sock.close()
                raise Error("connection_failed", f"{self.endpoint}: cannot connect: {os.strerror(err)}", err)
            left = deadline - time.monotonic()
            if left <= 0:
                sock.close()
                raise Error("timeout", f"{self.endpoint}: cannot connect {_within(self.timeout, self.timeout_name)}: "
                            "the server accepts no clients (its listen backlog stayed full)", errno_codes.ETIMEDOUT)
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    def _connect_tls(self, certificates, psk):
        user, host, port = parse_tls_address(self.path)
        self.endpoint = f"remote control {self.path}"
        context = _tls_context(self.path, certificates, psk)
        start = time.monotonic()
        deadline = start + self.timeout
        # A close without a TLS alert during the handshake is not a refusal (nbdsnapd refuses with an alert):
        # the server made room for newer handshakes in a flood, or the connection was cut. Tried again, as the
        # C++ library does (control-socket/tls_line_client.h), within TLS_CONNECT_ATTEMPTS and ~2 s.
        for attempt in range(1, TLS_CONNECT_ATTEMPTS + 1):
            try:
                self._sock = self._tls_handshake(context, host, port, deadline)
                return
            except _ClosedInHandshake as closed:
                now = time.monotonic()
                pause = 0.1 * (2 * attempt - 1) + random.random() * 0.1
                if attempt == TLS_CONNECT_ATTEMPTS or now - start >= TLS_RETRY_WINDOW or now + pause >= deadline:
                    tries = f" ({attempt} attempts)" if attempt > 1 else ""
                    raise Error("connection_failed", f"{self.endpoint}: TLS handshake: {TLS_CLOSED_BY_SERVER} "
                                f"({closed}){tries}", errno_codes.ECONNRESET) from None
                time.sleep(pause)

    def _tls_handshake(self, context, host, port, deadline):
        try:
            plain = socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.001))
        except socket.timeout:
            raise Error("timeout", f"{self.endpoint}: cannot connect {_within(self.timeout, self.timeout_name)}",
                        errno_codes.ETIMEDOUT) from None
        except OSError as e:
            raise Error("connection_failed", f"{self.endpoint}: cannot connect: {e.strerror or e}",
                        e.errno or 0) from None
        try:
            plain.settimeout(max(deadline - time.monotonic(), 0.001))
            return context.wrap_socket(plain, server_hostname=host)
        except socket.timeout:
            plain.close()
            raise Error("timeout", f"{self.endpoint}: no TLS handshake {_within(self.timeout, self.timeout_name)}",
                        errno_codes.ETIMEDOUT) from None
        except (OSError, ssl.SSLError) as e:
            plain.close()
            if _closed_without_alert(e):
                raise _ClosedInHandshake(str(e) or type(e).__name__) from None
            raise Error("connection_failed", f"{self.endpoint}: TLS handshake: {e}", errno_codes.ECONNREFUSED) from None

    # --- lifecycle -----------------------------------------------------------------------------------------
    def close(self):
        """Ends the connection (any state; idempotent). Waits for a call in flight on another thread."""
        with self._lock:
            if self.state != "closed":
                self._end("closed", "")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _end(self, state, why):
        try:
            self._sock.close()
        except OSError:
            pass
        self.state = state
        self._end_reason = why

    def _fail(self, code, message, err):
        self._end("dead", message)
        return Error(code, message, err)

    # --- the exchange ----------------------------------------------------------------------------------------
    def reply(self, command, server_wait=0.0, **arguments):
        """Sends {"command": command, ...arguments} and returns the reply object as the server sent it, "ok"
        true or false (for programs that look at refusals themselves). Client failures raise Error."""
        return self._exchange(command, server_wait, arguments)

    def call(self, command, server_wait=0.0, **arguments):
        """Sends a command and returns its result (the reply without "ok"); a refusal raises Error with the
        server's code, errno and message."""
        return self._result(self._exchange(command, server_wait, arguments))

    def _shaped(self, command, arguments=None, server_wait=0.0, after_reply=None):
        """call() for the commands this class wraps. _exchange checks a successful reply against the protocol's
        table (reply_shapes.json), which marks the fields a reply means nothing without (those these methods
        return): one missing, or any field of another type, is Error("protocol_error") naming the socket, the
        command and the field, and the client is dead (a reply that is not the protocol's: what else it says
        cannot be trusted). after_reply as _exchange's."""
        return self._result(self._exchange(command, server_wait, arguments or {}, after_reply))

    def _malformed(self, command, problem):
        return self._fail("protocol_error", f"{self.endpoint}: malformed reply to {command}: {problem}; is the "
                          "server (nbdsnapd or the nbdkit filter) the same version as this package?",
                          errno_codes.EPROTO)

    @staticmethod
    def _result(value):
        if value.pop("ok"):
            return value
        error = value.get("error") if isinstance(value.get("error"), dict) else {}

        def field(key, kind, default):  # as libnbdsnap: a field of another type reads as the default
            got = error.get(key)
            return got if isinstance(got, kind) and not isinstance(got, bool) else default
        raise Error(field("code", str, "unknown"), field("message", str, "(no message)"), field("errno", int, 0),
                    source="server")

    def _exchange(self, command, server_wait, arguments, after_reply=None):
        """One request and its reply object, under the lock; after_reply(value, sent), when given, looks further
        at a well-formed reply still under the lock (sent: when the request went out, time.monotonic())."""
        request = dict(arguments, command=command)
        try:
            # UTF-8 as the server reads it: a lone surrogate ("\ud800", which Python strings may hold) has no
            # UTF-8 form and NaN or Infinity no JSON one; both are refused here, as libnbdsnap refuses them,
            # instead of being sent as escapes the server refuses.
            line = json.dumps(request, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"
        except (TypeError, ValueError) as e:  # UnicodeEncodeError is a ValueError
            raise Error("invalid_request", f"{command}: the arguments cannot be sent as JSON: {e}",
                        errno_codes.EINVAL) from None
        with self._lock:
            if self.state != "connected":
                reason = "it was closed" if self.state == "closed" else "an earlier call failed: " + self._end_reason
                raise Error("not_connected", f"{self.endpoint}: not connected ({reason})", errno_codes.ENOTCONN)
            sent = time.monotonic()
            deadline = sent + self.timeout + server_wait
            self._send(line, command, deadline)
            text = self._receive_line(command, deadline)
            nesting = reply_nesting_problem(text)
            if nesting:
                raise self._malformed(command, nesting)
            try:
                # NaN and Infinity are no JSON (libnbdsnap refuses them too)
                value = json.loads(text, parse_constant=_refuse_constant)
            except (ValueError, RecursionError):
                value = None
            if not isinstance(value, dict) or not isinstance(value.get("ok"), bool):
                raise self._fail("protocol_error", f"{self.endpoint}: malformed reply to {command}: " +
                                 text[:200].decode(errors="replace"), errno_codes.EPROTO)
            # Every successful reply, whichever call asked for it (typed, call(), reply()), has the protocol's
            # field types, or the client is dead: read tolerantly, a mistyped field reads as another value.
            problem = reply_shape_problem(command, value) if value["ok"] else ""
            if problem:
                raise self._malformed(command, problem)
            if after_reply is not None:
                after_reply(value, sent)
            return value

    def _closes_within(self, grace):
        """Whether the server closes the connection within `grace` seconds after a reply. It sends nothing
        unasked, so anything else that comes is a protocol error."""
        until = time.monotonic() + grace
        try:
            left = until - time.monotonic()
            if left <= 0:
                return False
            self._sock.settimeout(left)
            chunk = self._sock.recv(65536)
        except socket.timeout:
            return False
        except (ssl.SSLError, OSError):
            return True  # reset, or a TLS connection cut without close_notify
        if chunk:
            raise self._fail("protocol_error", f"{self.endpoint}: the server sent a line nobody asked for: " +
                             chunk[:200].decode(errors="replace"), errno_codes.EPROTO)
        return True

    def _send(self, line, command, deadline):
        try:
            self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            self._sock.sendall(line)
        except socket.timeout:
            raise self._fail("timeout", f"{self.endpoint}: cannot send {command} "
                             f"{_within(self.timeout, self.timeout_name)}: the server does not read",
                             errno_codes.ETIMEDOUT) from None
        except ssl.SSLError as e:
            raise self._ssl_lost("send", e) from None
        except OSError as e:
            # A server that refuses a client (busy: --control-max-sessions) writes its reply and closes before
            # our request arrives: that reply is still ours to read, and says more than "Broken pipe".
            if e.errno in (errno_codes.EPIPE, errno_codes.ECONNRESET) and self._reply_left_behind():
                return
            raise self._lost("send", e.errno) from None

    def _reply_left_behind(self):
        """Reads, briefly, what the server sent before it closed; True when that holds a whole line."""
        until = time.monotonic() + 0.2
        while b"\n" not in self._buffered and not self._buffered.startswith(NBD_GREETING_MAGIC):
            left = until - time.monotonic()
            if left <= 0 or len(self._buffered) > MAXIMUM_REPLY_LINE:
                return False
            try:
                self._sock.settimeout(left)
                chunk = self._sock.recv(65536)
            except OSError:
                return False
            if not chunk:
                return False
            self._buffered += chunk
        return True

    def _receive_line(self, command, deadline):
        scanned = 0  # the bytes of _buffered already searched for the newline
        while True:
            if not self._replied and self._buffered.startswith(NBD_GREETING_MAGIC):
                raise self._fail("wrong_socket", self._wrong_socket_message(), errno_codes.EPROTO)
            newline = self._buffered.find(b"\n", scanned)
            if newline >= 0:
                line = bytes(self._buffered[:newline])
                del self._buffered[:newline + 1]
                self._replied = True
                return line
            scanned = len(self._buffered)
            if scanned > MAXIMUM_REPLY_LINE:
                raise self._fail("protocol_error", f"{self.endpoint}: a reply line to {command} longer than "
                                 f"{MAXIMUM_REPLY_LINE} bytes: not a reply of the control protocol",
                                 errno_codes.EPROTO)
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise socket.timeout()
                self._sock.settimeout(left)
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise self._fail("timeout", f"{self.endpoint}: no reply to {command} "
                                 f"{_within(self.timeout, self.timeout_name)}; the server may still carry it out",
                                 errno_codes.ETIMEDOUT) from None
            except ssl.SSLError as e:
                raise self._ssl_lost("receive", e) from None
            except OSError as e:
                raise self._lost("receive", e.errno) from None
            if not chunk:
                raise self._lost("receive", 0)
            self._buffered += chunk

    def _wrong_socket_message(self):
        return (f"{self.path}: this is an NBD socket, not a control socket: give the control socket "
                "(nbdsnapd --control PATH, or the nbdkit filter's nbdsnap-control=PATH)")

    def _lost(self, what, err):
        # An NBD server closes the connection on our request line (it is no NBD client flags field); the
        # greeting it sent first may be lost with the reset, so a fresh connection listens for it.
        if not self._tls and not self._replied and probe_socket_kind(self.path) == "nbd":
            return self._fail("wrong_socket", self._wrong_socket_message(), errno_codes.EPROTO)
        if not err:
            return self._fail("connection_lost", f"{self.endpoint}: server closed the connection", 0)
        if err in (errno_codes.EPIPE, errno_codes.ECONNRESET):
            return self._fail("connection_lost", f"{self.endpoint}: server closed the connection ({what}: "
                              f"{os.strerror(err)})", err)
        return self._fail("connection_lost", f"{self.endpoint}: {what}: {os.strerror(err)}", err)

    def _ssl_lost(self, what, error):
        """A TLS connection that broke: SSLError carries no errno of its own."""
        return self._fail("connection_lost", f"{self.endpoint}: {what}: {error}", errno_codes.ECONNRESET)

    # --- server and origins -----------------------------------------------------------------------------------
    def version(self):
        """{version, protocol, front_end}"""
        return self._shaped("version")

    def origins(self):
        """The origin objects: [{name, size, read_only, generation, change_number, ..., snapshot, clients, uri}]"""
        return self._shaped("origins")["origins"]

    def origin_info(self, name):
        return self._shaped("origin-info", {"name": name})["origin"]

    def origin_attach(self, name, path, read_only=False):
        """nbdsnapd only; `path` as the server sees it (give an absolute path)."""
        return self._shaped("origin-attach", {"name": name, "path": path, "read_only": read_only})["origin"]

    def origin_detach(self, name, force=False):
        self.call("origin-detach", name=name, force=force)

    # --- change block tracking --------------------------------------------------------------------------------
    def cbt_info(self, origin, snapshot=None):
        return self._shaped("cbt-info", _present(origin=origin, snapshot=snapshot))["cbt"]

    def cbt_map(self, origin, since=None, snapshot=None, offset=None, length=None, max_ranges=None):
        """One page of changed ranges: {generation, change_number, block_size, ranges: [{offset, length}],
        more, next_offset} (paging needs a server that pages; others send the whole map)."""
        return self._cbt_page("cbt-map", _present(origin=origin, since=since, snapshot=snapshot, offset=offset,
                                                  length=length, max_ranges=max_ranges))

    def cbt_changed_ranges(self, origin, since=None, snapshot=None, offset=None, length=None):
        """All pages of cbt_map joined: the reply of the first page with every page's ranges, more False. A change
        of generation between pages raises Error("generation_changed"); a page that says more follows but does
        not move on raises Error("protocol_error")."""
        return self._all_pages("cbt-map", "ranges", origin=origin, since=since, snapshot=snapshot, offset=offset,
                               length=length)

    def cbt_raw_map(self, origin, snapshot=None, offset=None, length=None, max_runs=None):
        """One page of change numbers per tracking block (servers with cbt-raw-map)."""
        return self._cbt_page("cbt-raw-map", _present(origin=origin, snapshot=snapshot, offset=offset,
                                                      length=length, max_runs=max_runs))

    def cbt_whole_raw_map(self, origin, snapshot=None, offset=None, length=None):
        """All pages of cbt_raw_map joined (runs of every page; length covers them all), as cbt_changed_ranges."""
        return self._all_pages("cbt-raw-map", "runs", origin=origin, snapshot=snapshot, offset=offset, length=length)

    def _cbt_page(self, command, arguments):
        """One page of a CBT map, checked (cbt_page.py): an inconsistent one raises Error("protocol_error"); the
        client stays connected."""
        page = self._shaped(command, dict(arguments))
        start = arguments.get("offset", 0)
        end = min(start + arguments["length"], (1 << 64) - 1) if "length" in arguments else (1 << 64) - 1
        problem = page_problem(command, page, start, end)
        if problem:
            raise Error("protocol_error", f"{command} of {arguments['origin']}: a page of the map is inconsistent: "
                        f"{problem}; is the server the same version as this package?", errno_codes.EPROTO)
        return page

    def _all_pages(self, command, items, **arguments):
        arguments = _present(**arguments)
        start = arguments.get("offset", 0)
        end = start + arguments["length"] if "length" in arguments else None
        joined = self._cbt_page(command, arguments)
        page, offset = joined, start
        while page.get("more"):
            following = page.get("next_offset", 0)
            if following <= offset or (end is not None and following >= end):
                raise Error("protocol_error", f"{command} of {arguments['origin']}: a page ended at offset "
                            f"{following} yet said more follows", errno_codes.EPROTO)
            offset = arguments["offset"] = following
            if end is not None:
                arguments["length"] = end - following
            page = self._cbt_page(command, arguments)
            if page.get("generation") != joined.get("generation"):
                raise Error("generation_changed", f"the CBT generation of {arguments['origin']} changed from "
                            f"{joined.get('generation')} to {page.get('generation')} while its map was read: CBT "
                            "history was lost, read it again (a backup: do a full one)", errno_codes.ESTALE)
            problem = pages_disagree(joined, page)
            if problem:
                raise Error("protocol_error", f"{command} of {arguments['origin']}: a page of the map is "
                            f"inconsistent: {problem}; is the server the same version as this package?",
                            errno_codes.EPROTO)
            joined[items].extend(page[items])
        joined["next_offset"] = page.get("next_offset", 0)
        joined["more"] = False
        if command == "cbt-raw-map":  # next_offset is required there (reply_shapes.json)
            if page["next_offset"] < joined.get("offset", 0):
                raise Error("protocol_error", f"{command} of {arguments['origin']}: the map starting at offset "
                            f"{joined.get('offset', 0)} ended before it, at offset {page['next_offset']}",
                            errno_codes.EPROTO)
            joined["length"] = page["next_offset"] - joined.get("offset", 0)
        return joined

    def cbt_mark_dirty(self, origin, ranges):
        """ranges: [(offset, length)] or [{offset, length}]. A long list is sent in requests of at most 16,384
        ranges (the protocol's lines are at most 1 MiB); an error stops at the failed request, the ones before it
        having been marked (harmless: marking only adds to what the next backup copies)."""
        ranges = [r if isinstance(r, dict) else {"offset": r[0], "length": r[1]} for r in ranges]
        for first in range(0, max(len(ranges), 1), MARK_DIRTY_RANGES_PER_REQUEST):
            self.call("cbt-mark-dirty", origin=origin,
                      ranges=ranges[first:first + MARK_DIRTY_RANGES_PER_REQUEST])

    def cbt_reset(self, origin):
        """Starts a new generation; returns it."""
        return self._shaped("cbt-reset", {"origin": origin})["generation"]

    def checkpoints(self, origin, snapshot=None):
        """{generation, checkpoints: [{name, number, taken_unix_ms}]} oldest first"""
        return self._shaped("checkpoints", _present(origin=origin, snapshot=snapshot))

    def checkpoint_delete(self, origin, name):
        """Servers with checkpoint-delete."""
        self.call("checkpoint-delete", origin=origin, name=name)

    # --- snapshots and their storage --------------------------------------------------------------------------
    def snapshot_create(self, name, origins, storage=None, limit=None, writable=False, sparse=False):
        """storage: [(path, size)] or [{path, size}] (size 0: the existing size); None: the server's default.
        Files created at a size are fully allocated unless sparse=True (then copy-on-write may hit ENOSPC and
        corrupt the snapshot); sparse applies to the (path, size) pairs with a size."""
        arguments = dict(name=name, origins=list(origins), writable=writable)
        if storage:
            arguments["storage"] = [s if isinstance(s, dict) else _storage_entry(s[0], s[1], sparse) for s in storage]
        if limit:
            arguments["limit"] = limit
        return self._shaped("snapshot-create", arguments)["snapshot"]

    def snapshot_add(self, name, origin):
        self.call("snapshot-add", name=name, origin=origin)

    def snapshot_remove(self, name, origin):
        self.call("snapshot-remove", name=name, origin=origin)

    def snapshot_take(self, name):
        return self._shaped("snapshot-take", {"name": name})["snapshot"]

    def snapshot_append_storage(self, name, path, size=0, sparse=False):
        """As snapshot_create's storage: a file created at `size` is allocated unless sparse=True."""
        arguments = dict(name=name, **_storage_entry(path, size, sparse))
        return self._shaped("snapshot-append-storage", arguments)["snapshot"]

    def snapshot_info(self, name):
        return self._shaped("snapshot-info", {"name": name})["snapshot"]

    def snapshots(self):
        return self._shaped("snapshot-list")["snapshots"]

    def snapshot_destroy(self, name, force=False):
        """Destroys a snapshot. The server refuses (code busy) while clients read its images unless force,
        which makes their requests fail from then on."""
        if force:
            self.call("snapshot-destroy", name=name, force=True)
        else:
            self.call("snapshot-destroy", name=name)

    # --- metrics ----------------------------------------------------------------------------------------------
    def stats(self):
        """{origins: [{name, writes, bytes_written, reads, bytes_read, chunks_copied, bytes_copied,
        copy_on_write_ns, cbt_blocks_marked, clients}], snapshots: [{name, state, storage_total, storage_used,
        storage_free, storage_limit, images: [{origin, export, reads, bytes_read, clients}]}]} (docs/control.md)."""
        reply = self._shaped("stats")
        return {"origins": reply["origins"], "snapshots": reply["snapshots"]}

    # --- events -----------------------------------------------------------------------------------------------
    def wait_events(self, after=0, wait=0.0):
        """{events, last_sequence}: the events with sequence > after, waiting up to `wait` seconds (0 or more;
        more than 24 h is cut to 24 h) for the first one. A server that stops or restarts meanwhile ends the
        wait early with no event and closes the connection: that raises Error("connection_lost") (as a
        connection lost otherwise), saying to resume with after=N on a new connection (N also in its
        `position`), rather than returning no events as if none had come within the wait."""
        wait = _seconds_argument(wait, "wait_events: wait", 0.0, MAXIMUM_EVENT_WAIT, clamp=True)

        def cut_short(value, sent):
            # A stopping server ends its waits at once, answers with no event and closes: not "no event came
            # within the wait". (It ends a wait early with no event for nothing else.)
            left = wait - (time.monotonic() - sent)
            if value["ok"] and not value.get("events") and left > EARLY_WAIT_END and \
                    self._closes_within(min(left, CLOSE_AFTER_CUT_WAIT)):
                raise self._fail("connection_lost", f"{self.endpoint}: the server closed the connection, ending "
                                 "events-wait early with no event (it stopped or restarted)", 0)
        try:
            return self._shaped("events-wait", {"after": after, "timeout_ms": int(wait * 1000)}, wait, cut_short)
        except Error as e:
            if e.code != "connection_lost":
                raise
            lost = Error(e.code, f"{e.message}: connect again and resume with after={after}", e.errno)
            lost.position = after
            raise lost from None

    def watch_events(self, callback, types=None, snapshot=None, origin=None, after=0, timeout=86400.0, poll=0.5,
                     stop=None):
        """Calls callback(event) with each event matching the filter (types: a list of event types; snapshot,
        origin: names; None matches any) as the server logs it, until the callback returns False, `stop` (a
        threading.Event) is set, or `timeout` seconds pass. Returns {"reason": "callback_stopped" |
        "stop_requested" | "timed_out", "position": the last sequence read, "delivered": events passed on}.
        `timeout` is seconds, 0 or more (finite: a program that watches for ever calls again with after=position)
        As libnbdsnap's Client::watch_events: the callback runs on the calling thread, one event at a time, in
        sequence order, with no lock held, so it may call this client (not close it); an exception it raises
        propagates. `stop` is seen within `poll` seconds (each events-wait's wait, cut to 0.01 .. 60); a call of
        another thread on this client may wait that long behind the watch. Errors: wait_events()'s; a lost
        connection's Error names the position to resume from (and has it as `position`)."""
        poll = _seconds_argument(poll, "watch_events: poll", SHORTEST_POLL, LONGEST_POLL, clamp=True)
        deadline = time.monotonic() + _seconds_argument(timeout, "watch_events: timeout")
        position, delivered = after, 0
        while True:
            if stop is not None and stop.is_set():
                return {"reason": "stop_requested", "position": position, "delivered": delivered}
            left = deadline - time.monotonic()
            if left <= 0:
                return {"reason": "timed_out", "position": position, "delivered": delivered}
            for event in self.wait_events(position, min(poll, left)).get("events", []):
                # Each event once, in sequence order (as libnbdsnap): one at or below the position reached was
                # delivered already; a server replaying old events would have them called back for ever.
                if event["sequence"] <= position:
                    continue
                position = event["sequence"]
                if types is not None and event.get("type") not in types:
                    continue
                if snapshot is not None and event.get("snapshot") != snapshot:
                    continue
                if origin is not None and event.get("origin") != origin:
                    continue
                delivered += 1
                if callback(event) is False:
                    return {"reason": "callback_stopped", "position": position, "delivered": delivered}

    def events(self, after=0, wait=1.0):
        """A blocking iterator over the event log from sequence `after` on; see EventStream."""
        return EventStream(self, after, wait)


class EventStream:
    """Iterates over events as they come, asking the server (events-wait, up to `wait` seconds each time) when
    none is buffered; runs until the caller stops (break) or an Error. `position` is the last sequence seen."""

    def __init__(self, client, after=0, wait=1.0):
        self.client = client
        self.position = after
        self.wait = _seconds_argument(wait, "events: wait", 0.0, MAXIMUM_EVENT_WAIT, clamp=True)
        self._buffered = []

    def __iter__(self):
        return self

    def _fetch(self, wait):
        """Buffers the events after `position`, each once, in sequence order (a replayed old one is dropped)."""
        newest = self.position
        for event in self.client.wait_events(self.position, wait).get("events", []):
            if event["sequence"] > newest:
                self._buffered.append(event)
                newest = event["sequence"]

    def __next__(self):
        while not self._buffered:
            self._fetch(self.wait)
        event = self._buffered.pop(0)
        self.position = event["sequence"]
        return event

    def next(self, wait):
        """The next event within `wait` seconds, or None."""
        if not self._buffered:
            self._fetch(wait)
        if not self._buffered:
            return None
        return self.__next__()


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _present(**arguments):
    return {key: value for key, value in arguments.items() if value is not None}
