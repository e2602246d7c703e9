// sizing.h — the one rule for tracking-block size and chunk size, scaled to the device like blksnap v4.
//
// Each size starts at 2^minimum_shift and doubles until the device needs at most maximum_count units.
#pragma once

#include <cstdint>

namespace nbdsnap {

struct SizingRules {
  unsigned tracking_block_minimum_shift = 16;   // 64 KiB
  uint64_t tracking_block_maximum_count = 1u << 21;
  unsigned chunk_minimum_shift = 18;            // 256 KiB
  uint64_t chunk_maximum_count = 1u << 21;
};

uint64_t tracking_block_size(uint64_t device_size, const SizingRules& rules);
uint64_t chunk_size(uint64_t device_size, const SizingRules& rules);

// Number of units of unit_size covering device_size (the last may be partial).
inline uint64_t unit_count(uint64_t device_size, uint64_t unit_size) {
  return device_size / unit_size + (device_size % unit_size != 0);
}

}  // namespace nbdsnap
