// export_name.cpp — "ORIGIN" and "ORIGIN@SNAPSHOT", and what a valid object name is.
#include "export_name.h"

namespace nbdsnap {

Status check_object_name(const std::string& kind, const std::string& name) {
  if (name.empty() || name.size() > 255) return {Errc::invalid_argument, kind + " name must be 1 to 255 bytes"};
  if (name[0] == '.' || name[0] == '-') {
    return {Errc::invalid_argument, kind + " name '" + name + "' must not start with '.' or '-'"};
  }
  for (const char c : name) {
    // '/' would escape the state directory, '@' separates origin and snapshot, control bytes break logs.
    if (c == '/' || c == '@' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return {Errc::invalid_argument, kind + " name '" + name + "' must not contain '/', '@' or control characters"};
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

std::string export_name_uri_path(const std::string& export_name) {
  static const char* const kHex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : export_name) {
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '.' || c == '_' || c == '~' || c == '@';
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

}  // namespace nbdsnap
