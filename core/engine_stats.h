// SPDX-License-Identifier: BSD-3-Clause
// engine_stats.h — what Engine::stats() returns: the counters of every origin and image (io_counters.h) and
// the space of every snapshot's difference storage, for the control command `stats` and its exporters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io_counters.h"

namespace nbdsnap {

struct OriginStats {
  std::string name;
  OriginCounterValues counters;
};

// The image of one origin in a taken snapshot.
struct ImageStats {
  std::string origin;
  ImageCounterValues counters;
};

struct SnapshotStats {
  std::string name;
  std::string state;               // snapshot_state_name(): created, taken or corrupted
  uint64_t storage_total = 0;      // bytes of all areas
  uint64_t storage_used = 0;       // bytes allocated to chunks
  uint64_t storage_free = 0;       // bytes still allocatable (within the limit)
  uint64_t storage_limit = 0;      // 0: none beyond the areas
  std::vector<ImageStats> images;  // once taken, by origin name; an origin detached by force has none
};

struct EngineStats {
  std::vector<OriginStats> origins;      // by name
  std::vector<SnapshotStats> snapshots;  // by name
};

}  // namespace nbdsnap
