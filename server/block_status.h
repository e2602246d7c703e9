// SPDX-License-Identifier: BSD-3-Clause
// block_status.h — turns engine answers (allocation extents, changed ranges) into NBD block status
// descriptors.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "block_device.h"
#include "cbt.h"
#include "nbd_protocol.h"

namespace nbdsnap {

// base:allocation descriptors for [offset, offset+length): extents are clipped, gaps reported as data (0),
// neighbours with equal flags merged. Always at least one descriptor when length > 0.
std::vector<nbd::BlockStatusDescriptor> allocation_descriptors(std::span<const Extent> extents,
                                                               uint64_t offset, uint32_t length);
// qemu:dirty-bitmap descriptors for [offset, offset+length): changed ranges are dirty (1), the rest clean
// (0).
std::vector<nbd::BlockStatusDescriptor> dirty_descriptors(std::span<const Range> changed, uint64_t offset,
                                                          uint32_t length);

}  // namespace nbdsnap
