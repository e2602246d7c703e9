// SPDX-License-Identifier: BSD-3-Clause
// block_device.cpp — default behaviour of optional BlockDevice operations and range checking.
#include "block_device.h"

#include <algorithm>
#include <vector>

namespace nbdsnap {

Status BlockDevice::trim(uint64_t, uint64_t, bool) {
  return {Errc::not_supported, "device cannot trim"};
}

Status BlockDevice::zero(uint64_t offset, uint64_t len, bool, bool fua) {
  static constexpr uint64_t kZeroBuffer = 1 << 20;
  const std::vector<uint8_t> zeroes(std::min(len, kZeroBuffer), 0);
  while (len > 0) {
    const uint64_t n = std::min<uint64_t>(len, zeroes.size());
    if (Status s = pwrite(zeroes.data(), n, offset, fua); !s) return s;
    len -= n;
    offset += n;
  }
  return Status::ok();
}

Status BlockDevice::extents(uint64_t offset, uint64_t len, std::vector<Extent>& out) {
  out.push_back({offset, len, false, false});
  return Status::ok();
}

Status check_range(uint64_t device_size, uint64_t offset, uint64_t len) {
  if (offset > device_size || len > device_size - offset) {
    return {Errc::out_of_range, "range " + std::to_string(offset) + "+" + std::to_string(len) +
                                    " is beyond the device size " + std::to_string(device_size)};
  }
  return Status::ok();
}

}  // namespace nbdsnap
