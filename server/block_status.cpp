// SPDX-License-Identifier: BSD-3-Clause
// block_status.cpp — building block status descriptors from extents and ranges (see block_status.h).
#include "block_status.h"

#include <algorithm>

namespace nbdsnap {

namespace {

// Appends [start, end) with flags, merging with the previous descriptor when the flags are equal.
void append_run(std::vector<nbd::BlockStatusDescriptor>& out, uint64_t start, uint64_t end, uint32_t flags) {
  if (end <= start) return;
  const uint32_t length = uint32_t(end - start);
  if (!out.empty() && out.back().flags == flags) {
    out.back().length += length;
  } else {
    out.push_back({length, flags});
  }
}

// Walks sorted, possibly overlapping runs over [offset, end), filling gaps with `gap_flags`.
template <typename Run, typename FlagsOf>
std::vector<nbd::BlockStatusDescriptor> describe(std::span<const Run> runs, uint64_t offset, uint32_t length,
                                                 uint32_t gap_flags, FlagsOf flags_of) {
  std::vector<nbd::BlockStatusDescriptor> out;
  const uint64_t end = offset + length;
  uint64_t cursor = offset;
  for (const Run& run : runs) {
    const uint64_t run_start = std::max(run.offset, cursor);
    const uint64_t run_end = std::min(run.offset + run.length, end);
    if (run_end <= run_start) continue;
    append_run(out, cursor, run_start, gap_flags);
    append_run(out, run_start, run_end, flags_of(run));
    cursor = run_end;
    if (cursor >= end) break;
  }
  append_run(out, cursor, end, gap_flags);
  return out;
}

}  // namespace

std::vector<nbd::BlockStatusDescriptor> allocation_descriptors(std::span<const Extent> extents,
                                                               uint64_t offset, uint32_t length) {
  return describe(extents, offset, length, 0, [](const Extent& e) {
    return (e.hole ? nbd::kStateHole : 0u) | (e.zero ? nbd::kStateZero : 0u);
  });
}

std::vector<nbd::BlockStatusDescriptor> dirty_descriptors(std::span<const Range> changed, uint64_t offset,
                                                          uint32_t length) {
  return describe(changed, offset, length, 0, [](const Range&) { return nbd::kStateDirty; });
}

}  // namespace nbdsnap
