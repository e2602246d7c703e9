// units.cpp — parsing and printing byte sizes.
#include "units.h"

#include <cstdio>

namespace nbdsnap {

Status parse_size(const std::string& text, uint64_t& out) {
  if (text.empty()) return {Errc::invalid_argument, "empty size"};
  uint64_t value = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) return {Errc::overflow, "size '" + text + "' is too large"};
    value = value * 10 + digit;
  }
  if (i == 0) return {Errc::invalid_argument, "size '" + text + "' does not start with a number"};
  std::string suffix = text.substr(i);
  if (suffix.size() >= 2 && (suffix.substr(1) == "iB" || suffix.substr(1) == "B")) suffix.resize(1);
  unsigned shift = 0;
  if (suffix.empty() || suffix == "B") shift = 0;
  else if (suffix == "K" || suffix == "k") shift = 10;
  else if (suffix == "M" || suffix == "m") shift = 20;
  else if (suffix == "G" || suffix == "g") shift = 30;
  else if (suffix == "T" || suffix == "t") shift = 40;
  else if (suffix == "P" || suffix == "p") shift = 50;
  else return {Errc::invalid_argument, "size '" + text + "' has an unknown suffix (use K, M, G, T, P)"};
  if (shift && value > (UINT64_MAX >> shift)) return {Errc::overflow, "size '" + text + "' is too large"};
  out = value << shift;
  return Status::ok();
}

std::string format_size(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes);
  unsigned unit = 0;
  while (value >= 1024 && unit < 6) value /= 1024, ++unit;
  char text[32];
  if (unit == 0) std::snprintf(text, sizeof text, "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(text, sizeof text, "%.1f %s", value, kUnits[unit]);
  return text;
}

Status parse_storage_spec(const std::string& text, std::string& path, uint64_t& size) {
  size = 0;
  const auto colon = text.rfind(':');
  if (colon != std::string::npos && colon + 1 < text.size() && text[colon + 1] >= '0' && text[colon + 1] <= '9') {
    path = text.substr(0, colon);
    if (Status s = parse_size(text.substr(colon + 1), size); !s) return s;
  } else {
    path = text;
  }
  if (path.empty()) return {Errc::invalid_argument, "storage spec '" + text + "' has no path"};
  return Status::ok();
}

}  // namespace nbdsnap
