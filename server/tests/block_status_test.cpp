// SPDX-License-Identifier: BSD-3-Clause
// block_status_test.cpp — extents and changed ranges become clipped, merged descriptors.
#include <doctest/doctest.h>

#include "block_status.h"

using namespace nbdsnap;
using D = nbd::BlockStatusDescriptor;

TEST_CASE("allocation_descriptors_clip_merge_and_fill_gaps_as_data") {
  const Extent extents[] = {{0, 4096, true, true}, {4096, 4096, true, true}, {8192, 4096, false, false}};
  CHECK(allocation_descriptors(extents, 1024, 10240) == std::vector<D>{{7168, 3}, {3072, 0}});
  const Extent gap[] = {{8192, 4096, true, true}};
  CHECK(allocation_descriptors(gap, 0, 16384) == std::vector<D>{{8192, 0}, {4096, 3}, {4096, 0}});
  CHECK(allocation_descriptors({}, 0, 512) == std::vector<D>{{512, 0}});
}

TEST_CASE("dirty_descriptors_mark_changed_ranges_dirty") {
  const Range changed[] = {{65536, 65536}, {262144, 65536}};
  CHECK(dirty_descriptors(changed, 0, 393216) ==
        std::vector<D>{{65536, 0}, {65536, 1}, {131072, 0}, {65536, 1}, {65536, 0}});
  CHECK(dirty_descriptors(changed, 70000, 1000) == std::vector<D>{{1000, 1}});
  CHECK(dirty_descriptors({}, 0, 4096) == std::vector<D>{{4096, 0}});
}
