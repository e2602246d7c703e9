// SPDX-License-Identifier: BSD-3-Clause
// next_device.h — the engine's BlockDevice over nbdkit's `next`: the plugin the filter sits on.
//
// The engine reads old data through it (copy-on-write before an origin write, unchanged chunks of an image).
// It never writes through it: the filter issues origin writes to `next` itself, after Origin::begin_write.
#pragma once

#include <cstdint>
#include <vector>

#include <nbdkit-filter.h>

#include "block_device.h"

namespace nbdsnap {

class NextDevice final : public BlockDevice {
 public:
  // REQUIRES: next->get_size(next) succeeded on this connection (size is its result).
  NextDevice(nbdkit_next* next, uint64_t size) : next_(next), size_(size) {}

  uint64_t size() const override { return size_; }
  Status pread(void* buf, uint64_t len, uint64_t offset) override;
  // Refused: writes reach the plugin only through the filter's own write path.
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override;
  Status flush() override;
  Status extents(uint64_t offset, uint64_t len, std::vector<Extent>& out) override;

 private:
  nbdkit_next* const next_;
  const uint64_t size_;
};

}  // namespace nbdsnap
