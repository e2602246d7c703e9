// SPDX-License-Identifier: BSD-3-Clause
// sizing.cpp — the tracking-block and chunk size rules (blksnap v4's: minimum shift, maximum shift, maximum
// count, never below the device's minimum I/O size).
#include "sizing.h"

#include <algorithm>

namespace nbdsnap {

uint64_t round_up_to_power_of_two(uint64_t value) {
  constexpr uint64_t kLargest = uint64_t{1} << 63;
  if (value >= kLargest) return kLargest;
  uint64_t power = 1;
  while (power < value) power <<= 1;
  return power;
}

namespace {

// The v4 loop: from 2^minimum_shift, double while there are too many units, not past 2^maximum_shift.
uint64_t scaled_unit_size(uint64_t device_size, unsigned minimum_shift, unsigned maximum_shift,
                          uint64_t maximum_count) {
  unsigned shift = std::min(minimum_shift, maximum_shift);
  while (shift < maximum_shift && shift < 63 &&
         unit_count(device_size, uint64_t{1} << shift) > maximum_count) {
    ++shift;
  }
  return uint64_t{1} << shift;
}

}  // namespace

uint64_t tracking_block_size(uint64_t device_size, uint64_t minimum_io_size, const SizingRules& rules) {
  const uint64_t scaled =
      scaled_unit_size(device_size, rules.tracking_block_minimum_shift, rules.tracking_block_maximum_shift,
                       rules.tracking_block_maximum_count);
  return std::max(scaled, round_up_to_power_of_two(minimum_io_size));
}

uint64_t chunk_size(uint64_t device_size, uint64_t minimum_io_size, const SizingRules& rules) {
  const uint64_t maximum_count =
      rules.chunk_maximum_count_shift >= 63 ? UINT64_MAX : uint64_t{1} << rules.chunk_maximum_count_shift;
  const uint64_t scaled =
      scaled_unit_size(device_size, rules.chunk_minimum_shift, rules.chunk_maximum_shift, maximum_count);
  return std::max(scaled, round_up_to_power_of_two(minimum_io_size));
}

uint64_t copy_read_size(uint64_t copy_io_size, uint64_t minimum_io_size, uint64_t chunk_size) {
  return std::min(chunk_size, std::max(copy_io_size, round_up_to_power_of_two(minimum_io_size)));
}

}  // namespace nbdsnap
