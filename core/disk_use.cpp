// SPDX-License-Identifier: BSD-3-Clause
// disk_use.cpp — overlap of disk uses (see disk_use.h).
#include "disk_use.h"

#include <algorithm>
#include <limits>

namespace nbdsnap {

namespace {
// One past the last byte (saturating: 0 length means to the end of any disk).
uint64_t end_of(const DiskUse& use) {
  if (use.length == 0 || use.offset + use.length < use.offset) return std::numeric_limits<uint64_t>::max();
  return use.offset + use.length;
}
}  // namespace

bool DiskUse::overlaps(const DiskUse& other) const {
  if (identity.empty() || identity != other.identity) return false;
  return std::max(offset, other.offset) < std::min(end_of(*this), end_of(other));
}

std::string DiskUse::extent_text() const {
  if (offset == 0 && length == 0) return "all of";
  if (length == 0) return "bytes " + std::to_string(offset) + ".. (to the end) of";
  return "bytes " + std::to_string(offset) + ".." + std::to_string(offset + length - 1) + " of";
}

const DiskUse* find_overlap(const std::vector<DiskUse>& uses, const DiskUse& wanted) {
  for (const DiskUse& use : uses) {
    if (use.overlaps(wanted)) return &use;
  }
  return nullptr;
}

}  // namespace nbdsnap
