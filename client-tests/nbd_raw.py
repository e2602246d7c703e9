# SPDX-License-Identifier: BSD-3-Clause
"""nbd_raw.py — the NBD protocol by hand, for tests whose clients must do what libnbd will not: stop mid-handshake,
send garbage or huge lengths, hold replies unread. One copy for every test (client-tests/functions.sh puts this
folder on PYTHONPATH).

The wire format is the one of the NBD protocol (NetworkBlockDevice proto.md): fixed newstyle handshake, options
"IHAVEOPT" + option + length + data, option replies with their own magic, 28-byte requests and 16-byte simple
replies, all big-endian. Functions raise EOFError when the server closes the connection and AssertionError when it
answers something the protocol does not allow here (wrong magic, a refused GO)."""
import fcntl
import socket
import struct
import termios
import time

GREETING = b"NBDMAGICIHAVEOPT"  # then 16 bits of handshake flags: 18 bytes
IHAVEOPT = b"IHAVEOPT"
OPTION_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
CLIENT_FLAGS = 3  # NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_GO = 1, 2, 3, 7
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
REP_ERR_UNSUP = 0x80000001
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM = 0, 1, 2, 3, 4
EPERM, EIO, EINVAL, ENOSPC = 1, 5, 22, 28


def recv_exact(s, n):
    """Exactly n bytes from socket s; EOFError if the server closes first."""
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("server closed the connection")
        data += chunk
    return data


def connect(path, timeout=None):
    """A Unix socket connected to path (blocking connect: a full listen backlog waits rather than fails)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    if timeout is not None:
        s.settimeout(timeout)
    return s


def greet(s):
    """Reads the server's greeting and answers with fixed newstyle, no zeroes."""
    hello = recv_exact(s, 18)
    assert hello[:16] == GREETING, hello
    s.sendall(struct.pack(">I", CLIENT_FLAGS))


def option_bytes(option, data=b""):
    return IHAVEOPT + struct.pack(">II", option, len(data)) + data


def send_option(s, option, data=b""):
    s.sendall(option_bytes(option, data))


def go_data(name):
    """The data of NBD_OPT_GO (or INFO) for export name (str or bytes), asking for no information items."""
    raw_name = name.encode() if isinstance(name, str) else name
    return struct.pack(">I", len(raw_name)) + raw_name + struct.pack(">H", 0)


def read_option_reply(s):
    """One option reply: (option, reply type, payload)."""
    magic, option, reply_type, length = struct.unpack(">QIII", recv_exact(s, 20))
    assert magic == OPTION_REPLY_MAGIC, hex(magic)
    return option, reply_type, recv_exact(s, length)


def option(s, option_code, data=b""):
    """Sends an option and reads its replies up to the last: returns REP_ACK or the error reply type."""
    send_option(s, option_code, data)
    while True:
        _, reply_type, _ = read_option_reply(s)
        if reply_type == REP_ACK or reply_type & 0x80000000:
            return reply_type


def go(s, name):
    """NBD_OPT_GO for export name; AssertionError if the server refuses it."""
    reply_type = option(s, OPT_GO, go_data(name))
    assert reply_type == REP_ACK, f"GO refused: {reply_type:#x}"


def transmission(path, name, timeout=None):
    """A socket in the transmission phase of export name."""
    s = connect(path, timeout)
    greet(s)
    go(s, name)
    return s


def request_bytes(cmd, handle, offset, length, flags=0):
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, handle, offset, length)


def request(s, cmd, handle, offset, length, payload=b""):
    s.sendall(request_bytes(cmd, handle, offset, length) + payload)


def read_simple_reply(s):
    """One simple reply header: (magic, error, handle)."""
    return struct.unpack(">IIQ", recv_exact(s, 16))


def simple_reply(s, handle, data_length=0):
    """The reply to request handle: (error, data); data is read only on success."""
    magic, error, got = read_simple_reply(s)
    assert magic == SIMPLE_REPLY_MAGIC and got == handle, (hex(magic), got, handle)
    data = recv_exact(s, data_length) if error == 0 and data_length else b""
    return error, data


def closed_by_server(s, timeout=30):
    """True once the server has closed its side (reads give end of file); a timeout raises."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True


def queued_bytes(s):
    """Bytes the server has written that this client has not read yet."""
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def settled_queue(s, quiet=0.3, limit=30):
    """queued_bytes once it stayed the same for `quiet` seconds (the server stopped writing), or after `limit`."""
    last, stable_since = -1, time.monotonic()
    deadline = stable_since + limit
    while time.monotonic() - stable_since < quiet and time.monotonic() < deadline:
        time.sleep(0.02)
        now = queued_bytes(s)
        if now != last:
            last, stable_since = now, time.monotonic()
    return last
