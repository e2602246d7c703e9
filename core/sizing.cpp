// sizing.cpp — the tracking-block and chunk size rule (blksnap v4's: minimum shift, maximum count).
#include "sizing.h"

namespace nbdsnap {

static uint64_t scaled_unit_size(uint64_t device_size, unsigned minimum_shift, uint64_t maximum_count) {
  unsigned shift = minimum_shift;
  while (shift < 63 && maximum_count > 0 && unit_count(device_size, uint64_t{1} << shift) > maximum_count) {
    ++shift;
  }
  return uint64_t{1} << shift;
}

uint64_t tracking_block_size(uint64_t device_size, const SizingRules& rules) {
  return scaled_unit_size(device_size, rules.tracking_block_minimum_shift, rules.tracking_block_maximum_count);
}

uint64_t chunk_size(uint64_t device_size, const SizingRules& rules) {
  return scaled_unit_size(device_size, rules.chunk_minimum_shift, rules.chunk_maximum_count);
}

}  // namespace nbdsnap
