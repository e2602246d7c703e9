// SPDX-License-Identifier: BSD-3-Clause
// sizing.h — the one rule for tracking-block size and chunk size, blksnap v4's (the module parameters of the
// v4 patch set, "blksnap: module management model functions" and its documentation, are our defaults).
//
// Both sizes are powers of two chosen per device: start at 2^minimum_shift and double while the device would
// have more than the maximum count of units, but stop doubling at 2^maximum_shift (past it the count may
// exceed the maximum, as in v4). A unit is never smaller than the device's minimum I/O size (v4 reads
// bdev_io_min() for chunks), rounded up to a power of two; that bound wins over maximum_shift, because a
// chunk smaller than the device's minimum I/O could not be read or written on its own.
//
// v4 changed the chunk rule from v1-v3's "at most 2^21 chunks" to "at most 2^40 chunks, at most 64 MiB": a
// 9 TiB disk gets 256 KiB chunks instead of 8 MiB ones, so a 4 KiB write copies 256 KiB, not 8 MiB. The chunk
// map holds only touched chunks (chunk_map.h), so the larger count costs no memory until chunks are touched.
//
// The bounds of each field, as both front ends accept them, are checked in one place: tuning.h.
#pragma once

#include <cstdint>

namespace nbdsnap {

struct SizingRules {
  unsigned tracking_block_minimum_shift = 16;                 // 64 KiB
  unsigned tracking_block_maximum_shift = 26;                 // 64 MiB
  uint64_t tracking_block_maximum_count = uint64_t{1} << 21;  // 2,097,152 blocks (a 2 MiB map)
  unsigned chunk_minimum_shift = 18;                          // 256 KiB
  unsigned chunk_maximum_shift = 26;                          // 64 MiB
  unsigned chunk_maximum_count_shift = 40;                    // at most 2^40 chunks
};

// The CBT block size of a device of device_size bytes whose minimum I/O size is minimum_io_size bytes (0 or
// 1: no minimum). A power of two. Thread-safe (pure).
uint64_t tracking_block_size(uint64_t device_size, uint64_t minimum_io_size, const SizingRules& rules);

// The copy-on-write chunk size of such a device. A power of two. Thread-safe (pure).
uint64_t chunk_size(uint64_t device_size, uint64_t minimum_io_size, const SizingRules& rules);

// The size of each read that copies a chunk from the origin: the configured copy I/O size, but never below
// the device's minimum I/O size (both powers of two) nor above the chunk (a chunk is one read at most).
uint64_t copy_read_size(uint64_t copy_io_size, uint64_t minimum_io_size, uint64_t chunk_size);

// Number of units of unit_size covering device_size (the last may be partial).
inline uint64_t unit_count(uint64_t device_size, uint64_t unit_size) {
  return device_size / unit_size + (device_size % unit_size != 0);
}

// The smallest power of two >= value (1 for 0 and 1; 2^63 for anything above it).
uint64_t round_up_to_power_of_two(uint64_t value);

}  // namespace nbdsnap
