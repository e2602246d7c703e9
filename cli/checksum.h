// SPDX-License-Identifier: BSD-3-Clause
// checksum.h — a fast 64-bit checksum of a buffer, used by `backup --verify` to compare what was copied
// with what the image and the backup file hold now. Not cryptographic: it detects accidents, not attacks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace nbdsnap::cli {

inline uint64_t checksum64(const void* data, size_t length) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  uint64_t hash = 0x9e3779b97f4a7c15ull ^ (length * 0xff51afd7ed558ccdull);
  size_t i = 0;
  for (; i + 8 <= length; i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    hash = (hash ^ (word * 0xc4ceb9fe1a85ec53ull)) * 0x100000001b3ull;
    hash ^= hash >> 29;
  }
  for (; i < length; ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ull;
  hash ^= hash >> 33;
  hash *= 0xff51afd7ed558ccdull;
  hash ^= hash >> 33;
  return hash;
}

inline bool is_all_zero(const char* data, size_t length) {
  if (length == 0) return true;
  return data[0] == 0 && std::memcmp(data, data + 1, length - 1) == 0;
}

}  // namespace nbdsnap::cli
