// SPDX-License-Identifier: BSD-3-Clause
// socket_kind.cpp — the URI's socket and the wrong-socket messages (see socket_kind.h).
#include "socket_kind.h"

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

}  // namespace

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

std::string nbd_socket_given_as_control_message(const std::string& path) {
  return path +
         ": this is an NBD socket, not a control socket: give --control the control socket "
         "(nbdsnapd --control PATH, or the nbdkit filter's nbdsnap-control=PATH)";
}

std::string control_socket_given_as_nbd_message(const std::string& uri, const std::string& path,
                                                const std::string& option) {
  return "cannot open " + uri + ": " + path +
         ": this is an nbdsnap control socket, not an NBD socket: give " + option +
         " a URI whose socket= is the NBD "
         "socket (nbdsnapd --listen unix:PATH, or nbdkit -U PATH)";
}

}  // namespace nbdsnap::cli
