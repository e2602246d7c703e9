// SPDX-License-Identifier: BSD-3-Clause
// options.h — what callers hand the engine: its configuration, a new snapshot's options and a CBT map query
// (beside engine.h, as LevelDB's options.h is beside db.h). Plain values: no locks, copy freely.
// Units: every size, offset and length is in bytes.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "block_device.h"
#include "cbt.h"
#include "direct_io.h"
#include "extent_clone.h"
#include "sizing.h"
#include "storage_spec.h"

namespace nbdsnap {

class ServedOriginFiles;

struct EngineConfig {
  std::string state_dir;  // where CBT state is saved; empty = not persistent
  SizingRules sizing;
  // Files the front end serves as origins without a BlockDevice saying so (the nbdkit filter's plugin files):
  // difference storage there is refused. Null: none.
  std::shared_ptr<const ServedOriginFiles> served_origin_files;
  uint64_t chunk_buffer_budget = 64ull << 20;  // old chunks held in memory awaiting writeback
  uint64_t low_space_threshold = 64ull << 20;  // free difference storage below this posts low_free_space
  uint64_t copy_io_size = 4ull << 20;          // a chunk larger than this is copied in several reads
  // How long a CBT reset waits for the origin's writes in flight (each belongs wholly to the old generation
  // or the new one) before it gives up with busy: a stalled disk must not hold the control lock for good.
  std::chrono::milliseconds cbt_reset_drain_limit{10000};
  // How long a take waits for the writes in flight at its origins (each must be wholly before the take or
  // wholly after it) while it holds every origin of the snapshot frozen, before it thaws them all and gives
  // up with busy, taking nothing: a stalled disk must not hold the snapshot's other origins for good.
  std::chrono::milliseconds take_drain_limit{10000};
  // Called (without engine locks held) once a snapshot's memory was freed: after destroy, and after a forced
  // detach dropped an origin's image; the engine has already unmapped its free chunk buffers
  // (chunk_buffer.h). A front end that keeps freed heap in its allocator for speed (nbdsnapd's mallopt
  // settings) may hand the rest back to the system here (malloc_trim). Empty: nothing.
  std::function<void()> memory_released;
  // CBT checkpoints kept per origin (check_checkpoints_kept).
  unsigned checkpoints_kept = kDefaultCheckpointsKept;
  // How difference-storage files are opened: none bypasses the page cache (O_DIRECT, core/direct_io.h).
  FileCache storage_cache = FileCache::writeback;
  // Whether copy-on-write may preserve a chunk by sharing the origin file's extents with difference storage
  // (extent_clone.h) where both are files on one file system that can (XFS reflink=1, btrfs).
  ReflinkMode reflink = ReflinkMode::automatic;
  // Receives informational lines (which way each origin preserves chunks); called from I/O threads without
  // engine locks held. Empty: not logged.
  std::function<void(const std::string&)> log_info;
  // Tests only: wraps each difference-storage device the engine opens, to inject faults (as LevelDB's
  // fault-injection tests wrap its Env). Empty: the files are used as they are.
  std::function<std::shared_ptr<BlockDevice>(std::shared_ptr<BlockDevice>)> wrap_storage_device;
};

struct SnapshotOptions {
  std::vector<std::string> origins;
  std::vector<StorageSpec> storage;
  uint64_t limit = 0;  // 0: no limit beyond the storage given
  bool writable = false;
};

// Which CBT map a query reads, and which part of it.
struct CbtMapQuery {
  std::string origin;
  std::string snapshot;  // "": the live map; else the map frozen when this snapshot was taken
  std::string since;     // cbt_map only: blocks changed after this checkpoint ("": in this generation)
  uint64_t offset = 0;   // bytes; at most the device size
  uint64_t length = UINT64_MAX;  // bytes; clipped to the device
  size_t max_items = SIZE_MAX;   // ranges (cbt_map) or runs (cbt_raw_map) per page, at least 1
};

}  // namespace nbdsnap
