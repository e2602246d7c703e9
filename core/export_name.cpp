// SPDX-License-Identifier: BSD-3-Clause
// export_name.cpp — "ORIGIN" and "ORIGIN@SNAPSHOT", and what a valid object name is.
#include "export_name.h"

#include <string_view>

namespace nbdsnap {

Status check_object_name(const std::string& kind, const std::string& name) {
  if (name.empty() || name.size() > 255)
    return {Errc::invalid_argument, kind + " name must be 1 to 255 bytes"};
  if (name[0] == '.' || name[0] == '-') {
    return {Errc::invalid_argument, kind + " name '" + name + "' must not start with '.' or '-'"};
  }
  for (const char c : name) {
    // '/' would escape the state directory, '@' separates origin and snapshot, control bytes break logs.
    if (c == '/' || c == '@' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return {Errc::invalid_argument,
              kind + " name '" + name + "' must not contain '/', '@' or control characters"};
    }
  }
  return Status::ok();
}

Status parse_export_name(const std::string& name, ExportName& out) {
  const auto at = name.rfind('@');
  if (at == std::string::npos) {
    out = {name, ""};
    return check_object_name("origin", name);
  }
  out = {name.substr(0, at), name.substr(at + 1)};
  if (Status s = check_object_name("origin", out.origin); !s) return s;
  return check_object_name("snapshot", out.snapshot);
}

std::string format_export_name(const std::string& origin, const std::string& snapshot) {
  return snapshot.empty() ? origin : origin + "@" + snapshot;
}

namespace {

// RFC 3986 percent-encoding of every byte but the unreserved ones and those in `kept`.
std::string percent_encode(const std::string& text, std::string_view kept) {
  static const char* const kHex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                            c == '-' || c == '.' || c == '_' || c == '~' ||
                            kept.find(char(c)) != std::string_view::npos;
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace

std::string export_name_uri_path(const std::string& export_name) {
  return percent_encode(export_name, "@");
}

std::string nbd_unix_uri(const std::string& export_name, const std::string& socket_path) {
  return "nbd+unix:///" + export_name_uri_path(export_name) + "?socket=" + percent_encode(socket_path, "/");
}

}  // namespace nbdsnap
