// SPDX-License-Identifier: BSD-3-Clause
// object_file_name.cpp — plain or hashed file names for objects (see object_file_name.h).
#include "object_file_name.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "export_name.h"

namespace nbdsnap {

namespace {

constexpr size_t kHashDigits = 16;

uint64_t fnv1a64(std::string_view bytes) {
  uint64_t hash = 14695981039346656037ull;
  for (const char c : bytes) hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return hash;
}

// A byte that may stand in a file name prefix: not '/', not '@' (the marker of hashed names), not a control
// byte.
bool safe_in_prefix(unsigned char c) {
  return c != '/' && c != '@' && c >= 0x20 && c != 0x7f;
}

bool is_utf8_continuation(unsigned char c) {
  return (c & 0xC0) == 0x80;
}

// The first bytes of `name` (at most max_bytes), unsafe bytes replaced by '_', never starting with '.' or '-'
// (no hidden files, nothing that reads as an option) and never ending inside a UTF-8 character.
std::string readable_prefix(std::string_view name, size_t max_bytes) {
  size_t length = std::min(name.size(), max_bytes);
  // Cut before the lead byte of a character the limit would split (UTF-8 characters are at most 4 bytes).
  for (int i = 0; i < 3 && length > 0 && length < name.size() &&
                  is_utf8_continuation(static_cast<unsigned char>(name[length]));
       ++i) {
    --length;
  }
  std::string prefix(name.substr(0, length));
  for (char& c : prefix) {
    if (!safe_in_prefix(static_cast<unsigned char>(c))) c = '_';
  }
  if (!prefix.empty() && (prefix[0] == '.' || prefix[0] == '-')) prefix[0] = '_';
  return prefix;
}

}  // namespace

bool object_file_name_is_plain(std::string_view name, std::string_view suffix) {
  if (name.size() + suffix.size() + kTemporaryFileSuffix.size() > kMaxFileNameBytes) return false;
  return check_object_name("object", std::string(name)).is_ok();
}

std::string object_file_name(std::string_view name, std::string_view suffix) {
  std::string file(name);
  if (object_file_name_is_plain(name, suffix)) return file.append(suffix);
  char hash[kHashDigits + 1];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a64(name)));
  const size_t room = kMaxFileNameBytes - kTemporaryFileSuffix.size() - suffix.size() - 1 - kHashDigits;
  return readable_prefix(name, room) + "@" + hash + std::string(suffix);
}

}  // namespace nbdsnap
