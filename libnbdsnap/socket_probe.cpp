// SPDX-License-Identifier: BSD-3-Clause
// socket_probe.cpp — greeting recognition and the probe (see nbdsnap/socket_probe.h).
#include "nbdsnap/socket_probe.h"

#include <cerrno>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "unix_socket.h"

namespace nbdsnap::client {

namespace {

// Closes the descriptor when the probe ends, whichever way.
struct ProbeSocket {
  int fd;
  ~ProbeSocket() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

bool is_nbd_greeting(std::string_view received) {
  return received.substr(0, kNbdGreetingMagic.size()) == kNbdGreetingMagic;
}

bool is_control_reply(std::string_view line) {
  const nlohmann::json reply = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  return reply.is_object() && reply.contains("ok") && reply["ok"].is_boolean();
}

SocketKind probe_socket_kind(const std::string& path, std::chrono::milliseconds greeting_wait,
                             Deadline deadline) {
  ProbeSocket probe{connect_unix(path, deadline)};
  if (probe.fd < 0) return SocketKind::unknown;
  std::string received;
  char buffer[4096];
  // An NBD server greets first; a control server stays silent until asked.
  const Deadline greeting_deadline = std::min(std::chrono::steady_clock::now() + greeting_wait, deadline);
  while (received.size() < kNbdGreetingMagic.size()) {
    const ssize_t n = receive_some(probe.fd, buffer, sizeof(buffer), greeting_deadline);
    if (n == 0 || (n < 0 && errno != ETIMEDOUT)) return SocketKind::unknown;
    if (n < 0) break;  // silence: not an NBD server
    received.append(buffer, static_cast<size_t>(n));
    if (received.compare(0, received.size(), kNbdGreetingMagic.substr(0, received.size())) != 0) break;
  }
  if (is_nbd_greeting(received)) return SocketKind::nbd;
  if (!received.empty()) return SocketKind::unknown;  // spoke first, but not NBD
  if (!send_all(probe.fd, "{\"command\":\"version\"}\n", deadline)) return SocketKind::unknown;
  for (;;) {
    const auto newline = received.find('\n');
    if (newline != std::string::npos) {
      return is_control_reply(std::string_view(received).substr(0, newline)) ? SocketKind::control
                                                                             : SocketKind::unknown;
    }
    if (received.size() > 65536) return SocketKind::unknown;
    const ssize_t n = receive_some(probe.fd, buffer, sizeof(buffer), deadline);
    if (n <= 0) return SocketKind::unknown;
    received.append(buffer, static_cast<size_t>(n));
  }
}

}  // namespace nbdsnap::client
