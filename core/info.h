// SPDX-License-Identifier: BSD-3-Clause
// info.h — what the engine reports: an origin's, a snapshot's and a CBT map's description, as Engine's
// *_info calls and lists return them (the control protocol's replies are built from these). Plain values,
// copied out under the engine's locks: they are a picture of one moment. Units: bytes unless said otherwise.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cbt.h"

namespace nbdsnap {

struct OriginInfo {
  std::string name;
  uint64_t size = 0;
  uint64_t minimum_io_size = 1;  // the device's; chunks and tracking blocks are never smaller
  bool read_only = false;
  std::string generation;
  unsigned change_number = 0;
  uint64_t tracking_block_size = 0;
  uint64_t chunk_size = 0;
  std::string snapshot;  // the snapshot it belongs to, if any
};

enum class SnapshotState { created, taken, corrupted };
const char* snapshot_state_name(SnapshotState state);

// The failure that corrupted a snapshot for one of its origins (blksnap's SNAPSHOTINFO error_code): the first
// one of that origin.
struct OriginError {
  std::string origin;
  int error_code =
      0;  // errno: EIO (an origin read or storage write failed), ENOSPC (storage full), ENOMEM...
  std::string reason;  // what failed, in words
};

struct StorageAreaInfo {
  std::string path;
  uint64_t offset = 0;  // where the area starts in the file or device
  uint64_t size = 0;    // bytes of the area
  bool created_by_engine = false;
  bool sparse = false;  // created sparse (StorageSpec::sparse): its blocks are allocated as chunks are stored
};

struct SnapshotInfo {
  std::string name;
  SnapshotState state = SnapshotState::created;
  bool writable = false;
  std::vector<std::string> origins;
  std::vector<StorageAreaInfo> storage;
  uint64_t storage_total = 0;  // bytes of all areas
  uint64_t storage_used = 0;   // bytes allocated to chunks
  uint64_t storage_limit = 0;  // 0 = the areas' total
  uint64_t chunks_copied = 0;
  uint64_t memory_bytes = 0;
  std::string corruption_reason;
  std::vector<OriginError> origin_errors;  // per origin with a failure, in origin name order
  int64_t taken_unix_ms = 0;
  // How long the take held new writes at its origins (from the first hold to the thaw), and how much of that
  // it waited for the writes already in flight to finish: what a take costs the origins' writers.
  // Microseconds.
  uint64_t take_hold_us = 0;
  uint64_t take_drain_us = 0;
};

// An origin's CBT: its live map, or the map frozen when a snapshot was taken.
struct CbtInfo {
  std::string origin;
  std::string snapshot;  // "" for the live map
  std::string generation;
  unsigned change_number = 0;  // live: the number writes get now; frozen: the number the take closed
  uint64_t block_size = 0;
  uint64_t block_count = 0;
  uint64_t device_size = 0;
  Checkpoints checkpoints;
};

}  // namespace nbdsnap
