// nbdsnap/transport.h — how a Client reaches the server: a connection that carries lines of text, every
// step bounded by a deadline. The Unix socket is the transport built in; others (TLS over TCP) plug in by
// implementing this interface and passing it to Client::connect().
//
// A transport is used by one Client, which serialises the calls (a transport needs no locking of its own).
// Errors are client errors (ErrorSource::client) with the codes of result.h: kTimeout when the deadline
// passed, kConnectionFailed, kConnectionLost, kWrongSocket.
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

}  // namespace nbdsnap::client
