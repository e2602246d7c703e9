// SPDX-License-Identifier: BSD-3-Clause
// nbdsnap/transport.h — how a Client reaches the server: a connection that carries lines of text, every
// step bounded by a deadline. The Unix socket is the transport built in; others (TLS over TCP) plug in by
// implementing this interface and passing it to Client::connect().
//
// A transport is used by one Client, which serialises the calls (a transport needs no locking of its own).
// Errors are client errors (ErrorSource::client) with the codes of result.h: kTimeout when the deadline
// passed, kConnectionFailed, kConnectionLost, kWrongSocket. A kTimeout from connect() says why in its message
// ("the server accepts no clients"); Client::connect() puts the endpoint and the timeout in front of it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "nbdsnap/result.h"

namespace nbdsnap::client {

using Deadline = std::chrono::steady_clock::time_point;

class Transport {
 public:
  virtual ~Transport() = default;

  // Opens the connection before `deadline`. Called once, first.
  virtual Result<void> connect(Deadline deadline) = 0;
  // Sends all of `line` (one request, ending in '\n') before `deadline`.
  virtual Result<void> send_line(std::string_view line, Deadline deadline) = 0;
  // The next line the server sent, without its '\n', waiting until `deadline` at most.
  virtual Result<std::string> receive_line(Deadline deadline) = 0;
  // Names the endpoint in messages: "control socket /run/nbdsnap/control.sock".
  virtual std::string endpoint() const = 0;
};

// The Unix stream socket at `path`. connect() fails with kConnectionFailed (errno ENAMETOOLONG for a path
// that is empty or does not fit in sockaddr_un). A connection that ends before the first reply, or whose
// server greets first with NBD's "NBDMAGIC", is probed and reported as kWrongSocket when it is an NBD socket.
std::unique_ptr<Transport> unix_socket_transport(const std::string& path);

// The credentials of a TLS transport, in the file layouts of nbdkit, QEMU and libnbd: a directory holding
// ca-cert.pem (the CA that signed the server's certificate) and, when the server asks for a client
// certificate, client-cert.pem and client-key.pem; or a PSK file of `username:hexkey` lines (psktool).
struct TlsFiles {
  std::string certificates_dir;
  std::string psk_file;
};

// Whether `address` has the form of a TLS control address: it starts with "tls://".
bool is_tls_address(const std::string& address);

// TLS 1.2/1.3 (GnuTLS) over TCP to nbdsnapd's remote control listener (nbdsnapd --control-listen), at
// "tls://[USER@]HOST:PORT" (HOST may be [IPv6]; USER picks the PSK file's key, default its only entry). The
// credentials are read here, so a bad file is reported before any connection; connect() resolves HOST,
// connects and completes the handshake before its deadline; with X.509 the server's certificate must be
// signed by ca-cert.pem and name HOST. Errors: kInvalidRequest (not such an address; neither a certificates
// directory nor a PSK file given), kBadCredentials (a file missing, unreadable or refused; USER not in the
// PSK file; the message names the file). connect() fails with kConnectionFailed (resolving, TCP, the
// handshake) or kTimeout; the server may still refuse each command with permission_denied (its role for this
// identity). A handshake the server closes without a TLS alert (not a refusal: nbdsnapd making room for newer
// handshakes in a flood, --control-max-handshakes) is tried again by connect(), up to 3 attempts within about
// 2 s and the deadline; its kConnectionFailed message then says to try again, where a refusal names the key
// or certificate to check.
Result<std::unique_ptr<Transport>> tls_transport(const std::string& address, const TlsFiles& files);

}  // namespace nbdsnap::client
