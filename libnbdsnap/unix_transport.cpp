// SPDX-License-Identifier: BSD-3-Clause
// unix_transport.cpp — the Unix socket transport: line framing over a non-blocking stream socket, and the
// recognition of an NBD socket given by mistake (see nbdsnap/transport.h).
#include <cerrno>
#include <cstring>

#include <unistd.h>

#include "client_failure.h"
#include "nbdsnap/socket_probe.h"
#include "nbdsnap/transport.h"
#include "unix_socket.h"

namespace nbdsnap::client {

namespace {

// How long to listen for an NBD greeting when the connection ended without a reply: a server greets at once.
constexpr std::chrono::milliseconds kGreetingWait{1000};
// Lines longer than the server's limit (1 MiB) plus slack are not replies of the protocol.
constexpr size_t kMaximumLine = 64u << 20;

class UnixTransport final : public Transport {
 public:
  explicit UnixTransport(std::string path) : path_(std::move(path)) {}
  ~UnixTransport() override {
    if (fd_ >= 0) ::close(fd_);
  }
  UnixTransport(const UnixTransport&) = delete;
  UnixTransport& operator=(const UnixTransport&) = delete;

  Result<void> connect(Deadline deadline) override {
    fd_ = connect_unix(path_, deadline);
    if (fd_ >= 0) return {};
    const int err = errno;
    if (err == ENAMETOOLONG) {
      return client_failure(kConnectionFailed, err,
                            "control socket path '" + path_ + "' is empty or too long");
    }
    if (err == ETIMEDOUT) return client_failure(kTimeout, err, "the server accepts no clients");
    return client_failure(kConnectionFailed, err, endpoint() + ": cannot connect: " + std::strerror(err));
  }

  Result<void> send_line(std::string_view line, Deadline deadline) override {
    if (send_all(fd_, line, deadline)) return {};
    const int err = errno;
    if (err == ETIMEDOUT) return client_failure(kTimeout, err, endpoint() + ": the server does not read");
    // A server that refuses a client (busy: --control-max-sessions) writes its reply and closes before our
    // request arrives; the reply is still ours to read, and says more than "Broken pipe".
    if ((err == EPIPE || err == ECONNRESET) && reply_left_behind()) return {};
    return connection_lost("send", err);
  }

  Result<std::string> receive_line(Deadline deadline) override {
    size_t scanned = 0;  // searched for the newline already: a long line costs time linear in its length
    for (;;) {
      if (!replied_ && is_nbd_greeting(buffered_)) return wrong_socket();
      const size_t newline = buffered_.find('\n', scanned);
      if (newline != std::string::npos) {
        std::string line = buffered_.substr(0, newline);
        buffered_.erase(0, newline + 1);
        replied_ = true;
        return line;
      }
      if (buffered_.size() > kMaximumLine) {
        return client_failure(
            kProtocolError, EPROTO,
            endpoint() + ": a reply line longer than " + std::to_string(kMaximumLine) + " bytes");
      }
      scanned = buffered_.size();
      char chunk[65536];
      const ssize_t n = receive_some(fd_, chunk, sizeof(chunk), deadline);
      if (n > 0) {
        buffered_.append(chunk, static_cast<size_t>(n));
        continue;
      }
      const int err = n == 0 ? 0 : errno;
      if (err == ETIMEDOUT) return client_failure(kTimeout, err, endpoint() + ": no reply in time");
      return connection_lost("receive", err);
    }
  }

  std::string endpoint() const override { return "control socket " + path_; }

 private:
  Error wrong_socket() const {
    return client_failure(kWrongSocket, EPROTO,
                          path_ +
                              ": this is an NBD socket, not a control socket: give the control socket "
                              "(nbdsnapd --control PATH, or the nbdkit filter's nbdsnap-control=PATH)");
  }

  // Reads what the server sent before it closed, briefly; true when that holds a whole line (a reply) or an
  // NBD greeting, for receive_line() to return or to recognise.
  bool reply_left_behind() {
    const Deadline until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    for (;;) {
      if (buffered_.find('\n') != std::string::npos || is_nbd_greeting(buffered_)) return true;
      if (buffered_.size() > kMaximumLine) return false;
      char chunk[65536];
      const ssize_t n = receive_some(fd_, chunk, sizeof(chunk), until);
      if (n <= 0) return false;
      buffered_.append(chunk, static_cast<size_t>(n));
    }
  }

  // The connection ended before a reply: an NBD server does that after our request (it is no NBD client
  // flags field), and the greeting it sent first may be lost with the reset, so a fresh connection listens.
  Error connection_lost(const char* what, int err) const {
    if (!replied_) {
      const Deadline probe_deadline = std::chrono::steady_clock::now() + 2 * kGreetingWait;
      if (probe_socket_kind(path_, kGreetingWait, probe_deadline) == SocketKind::nbd) return wrong_socket();
    }
    if (err == 0) return client_failure(kConnectionLost, 0, endpoint() + ": server closed the connection");
    // A send into a connection the server closed (it stopped between two requests).
    if (err == EPIPE || err == ECONNRESET) {
      return client_failure(
          kConnectionLost, err,
          endpoint() + ": server closed the connection (" + what + ": " + std::strerror(err) + ")");
    }
    return client_failure(kConnectionLost, err, endpoint() + ": " + what + ": " + std::strerror(err));
  }

  std::string path_;
  int fd_ = -1;
  std::string buffered_;  // bytes received after the last complete line
  bool replied_ = false;  // a line has been received on this connection
};

}  // namespace

std::unique_ptr<Transport> unix_socket_transport(const std::string& path) {
  return std::make_unique<UnixTransport>(path);
}

}  // namespace nbdsnap::client
