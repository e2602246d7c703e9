// socket_kind.cpp — greeting recognition and the probe (see socket_kind.h).
#include "socket_kind.h"

#include <cerrno>

#include <unistd.h>

#include <nlohmann/json.hpp>

namespace nbdsnap::cli {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

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

std::string unix_socket_of_uri(std::string_view uri) {
  const auto scheme_end = uri.find("://");
  if (scheme_end == std::string_view::npos) return {};
  const std::string_view scheme = uri.substr(0, scheme_end);
  if (scheme != "nbd+unix" && scheme != "nbds+unix") return {};
  const auto query_start = uri.find('?');
  if (query_start == std::string_view::npos) return {};
  std::string_view query = uri.substr(query_start + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    const auto end = query.find('&');
    const std::string_view parameter = query.substr(0, end);
    if (parameter.substr(0, 7) == "socket=") return percent_decode(parameter.substr(7));
    if (end == std::string_view::npos) break;
    query.remove_prefix(end + 1);
  }
  return {};
}

SocketKind probe_socket_kind(const std::string& path, std::chrono::milliseconds greeting_wait,
                             const Deadline& deadline) {
  ProbeSocket probe{connect_unix(path, deadline)};
  if (probe.fd < 0) return SocketKind::unknown;
  std::string received;
  char buffer[4096];
  // An NBD server greets first; a control server stays silent until asked.
  const Deadline greeting_deadline = Deadline::earlier(Deadline(greeting_wait), deadline);
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

std::string nbd_socket_given_as_control_message(const std::string& path) {
  return path + ": this is an NBD socket, not a control socket: give --control the control socket "
                "(nbdsnapd --control PATH, or the nbdkit filter's nbdsnap-control=PATH)";
}

std::string control_socket_given_as_nbd_message(const std::string& uri, const std::string& path) {
  return "cannot open " + uri + ": " + path +
         ": this is an nbdsnap control socket, not an NBD socket: give --image a URI whose socket= is the NBD "
         "socket (nbdsnapd --listen unix:PATH, or nbdkit -U PATH)";
}

}  // namespace nbdsnap::cli
