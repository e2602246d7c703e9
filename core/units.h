// SPDX-License-Identifier: BSD-3-Clause
// units.h — sizes as users write them: "1048576", "64K", "256M", "2G", "1T" (powers of 1024).
#pragma once

#include <cstdint>
#include <string>

#include "status.h"

namespace nbdsnap {

// Binary size units, in bytes, for code and tests that write sizes (the suffixes parse_size reads).
inline constexpr uint64_t KiB = uint64_t{1} << 10;
inline constexpr uint64_t MiB = uint64_t{1} << 20;
inline constexpr uint64_t GiB = uint64_t{1} << 30;
inline constexpr uint64_t TiB = uint64_t{1} << 40;
inline constexpr uint64_t PiB = uint64_t{1} << 50;

// Reads a whole number of bytes with an optional binary suffix (K, M, G, T, P; KiB and KB read the same).
// invalid_argument says in words what is wrong and what to write instead (a negative size, "1.5G" -> 1536M,
// an unknown suffix); overflow when the value does not fit in 64 bits.
Status parse_size(const std::string& text, uint64_t& out);
std::string format_size(uint64_t bytes);  // "1.5 GiB"

}  // namespace nbdsnap
