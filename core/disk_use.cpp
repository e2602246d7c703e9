// SPDX-License-Identifier: BSD-3-Clause
// disk_use.cpp — overlap of disk uses (see disk_use.h).
#include "disk_use.h"

#include <algorithm>
#include <limits>
#include <string_view>

namespace nbdsnap {

namespace {
// One past the last byte (saturating: 0 length means to the end of any disk).
uint64_t end_of(const DiskUse& use) {
  if (use.length == 0 || use.offset + use.length < use.offset) return std::numeric_limits<uint64_t>::max();
  return use.offset + use.length;
}
// The file or disk an identity names, without where in it a loop device starts: "file 2049:12 at 4096" is
// "file 2049:12" (file_device.cpp, loop_backing_identity).
std::string_view disk_of(const std::string& identity) {
  const std::string_view whole(identity);
  return whole.substr(0, whole.find(" at "));
}
}  // namespace

bool DiskUse::overlaps(const DiskUse& other) const {
  if (identity.empty() || disk_of(identity) != disk_of(other.identity)) return false;
  // One disk seen from two starting points (its file and a loop device at an offset in it): byte ranges are
  // in different coordinates, so any use of one counts as using all of the other.
  if (identity != other.identity) return true;
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
