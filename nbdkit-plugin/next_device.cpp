// SPDX-License-Identifier: BSD-3-Clause
// next_device.cpp — reads and allocation queries forwarded to the plugin below the filter.
#include "next_device.h"

#include <algorithm>
#include <cerrno>
#include <string>

namespace nbdsnap {
namespace {

// nbdkit takes 32-bit request lengths; larger engine requests are split.
constexpr uint64_t kMaxRequestBytes = 32u << 20;
constexpr uint64_t kMaxExtentsRequestBytes = 1u << 30;

std::string where(uint64_t offset, uint64_t len) {
  return std::to_string(len) + " bytes at offset " + std::to_string(offset);
}

}  // namespace

Status NextDevice::pread(void* buf, uint64_t len, uint64_t offset) {
  if (Status range = check_range(size_, offset, len); !range) return range;
  auto* out = static_cast<char*>(buf);
  for (uint64_t done = 0; done < len;) {
    uint32_t count = static_cast<uint32_t>(std::min(len - done, kMaxRequestBytes));
    int err = 0;
    if (next_->pread(next_, out + done, count, offset + done, 0, &err) == -1)
      return Status::from_errno(err ? err : EIO, "plugin read of " + where(offset + done, count));
    done += count;
  }
  return Status::ok();
}

Status NextDevice::pwrite(const void*, uint64_t len, uint64_t offset, bool) {
  return {Errc::read_only, "the engine does not write to the plugin (" + where(offset, len) + ")"};
}

Status NextDevice::flush() {
  return Status::ok();
}

Status NextDevice::extents(uint64_t offset, uint64_t len, std::vector<Extent>& out) {
  if (Status range = check_range(size_, offset, len); !range) return range;
  if (next_->can_extents(next_) != 1) return BlockDevice::extents(offset, len, out);
  for (uint64_t done = 0; done < len;) {
    uint32_t count = static_cast<uint32_t>(std::min(len - done, kMaxExtentsRequestBytes));
    int err = 0;
    nbdkit_extents* found = nbdkit_extents_full(next_, count, offset + done, 0, &err);
    if (found == nullptr)
      return Status::from_errno(err ? err : EIO, "plugin extents of " + where(offset + done, count));
    uint64_t end = offset + done + count;
    for (size_t i = 0, n = nbdkit_extents_count(found); i < n; ++i) {
      nbdkit_extent e = nbdkit_get_extent(found, i);
      uint64_t from = std::max<uint64_t>(e.offset, offset + done);
      uint64_t to = std::min<uint64_t>(e.offset + e.length, end);
      if (from >= to) continue;
      out.push_back(
          Extent{from, to - from, (e.type & NBDKIT_EXTENT_HOLE) != 0, (e.type & NBDKIT_EXTENT_ZERO) != 0});
    }
    nbdkit_extents_free(found);
    done += count;
  }
  return Status::ok();
}

}  // namespace nbdsnap
