// SPDX-License-Identifier: BSD-3-Clause
// units.cpp — parsing and printing byte sizes.
#include "units.h"

#include <cstdio>

namespace nbdsnap {

namespace {

// The binary shift of a size suffix ("", "B", "K", "KiB", "KB", "M"...), or -1 when it is not one.
int suffix_shift(std::string suffix) {
  if (suffix.size() >= 2 && (suffix.substr(1) == "iB" || suffix.substr(1) == "B")) suffix.resize(1);
  if (suffix.empty() || suffix == "B") return 0;
  static const char kLetters[] = "KMGTP";
  for (int i = 0; i < 5; ++i) {
    if (suffix.size() == 1 && (suffix[0] == kLetters[i] || suffix[0] == kLetters[i] + ('a' - 'A')))
      return 10 * (i + 1);
  }
  return -1;
}

// "1.5G": what to write instead, in words ("1536M" when the value is whole in a smaller unit).
std::string fraction_advice(const std::string& text, size_t point) {
  size_t end = point + 1;
  while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
  const std::string whole = text.substr(0, point), fraction = text.substr(point + 1, end - point - 1);
  const int shift = suffix_shift(text.substr(end));
  std::string advice = "write a whole number of bytes or of a smaller unit";
  if (shift <= 0 || fraction.empty() || whole.size() + fraction.size() > 15) return advice;
  // value = digits / 10^decimals * 2^shift, exact when 10^decimals divides digits << shift.
  uint64_t digits = std::stoull(whole + fraction), scale = 1;
  for (size_t i = 0; i < fraction.size(); ++i) scale *= 10;
  for (int unit_shift = shift - 10; unit_shift >= 0; unit_shift -= 10) {
    const uint64_t numerator = digits << (shift - unit_shift);
    if ((numerator >> (shift - unit_shift)) != digits) break;  // too large to say exactly
    if (numerator % scale == 0) {
      static const char* const kUnits[] = {"", "K", "M", "G", "T"};
      return advice + ": " + text.substr(0, end) + text.substr(end, 1) + " is " +
             std::to_string(numerator / scale) + kUnits[unit_shift / 10];
    }
  }
  return advice;
}

}  // namespace

Status parse_size(const std::string& text, uint64_t& out) {
  if (text.empty())
    return {Errc::invalid_argument, "the size is empty: give a number of bytes such as 4096, 64K or 2G"};
  if (text[0] == '-')
    return {Errc::invalid_argument, "size '" + text + "' is negative: sizes are whole numbers of bytes"};
  uint64_t value = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) return {Errc::overflow, "size '" + text + "' is too large"};
    value = value * 10 + digit;
  }
  if (i == 0) {
    return {Errc::invalid_argument,
            "size '" + text + "' does not start with a number (sizes look like 4096, 64K, 2G)"};
  }
  if (i < text.size() && (text[i] == '.' || text[i] == ',')) {
    return {Errc::invalid_argument, "size '" + text + "' is not a whole number: " + fraction_advice(text, i)};
  }
  const int shift = suffix_shift(text.substr(i));
  if (shift < 0) {
    return {Errc::invalid_argument, "size '" + text + "' has an unknown suffix '" + text.substr(i) +
                                        "' (use K, M, G, T or P, powers of 1024)"};
  }
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
  if (unit == 0)
    std::snprintf(text, sizeof text, "%llu B", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(text, sizeof text, "%.1f %s", value, kUnits[unit]);
  return text;
}

}  // namespace nbdsnap
