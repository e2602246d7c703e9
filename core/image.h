// SPDX-License-Identifier: BSD-3-Clause
// image.h — the frozen view of one origin in a taken snapshot, as a front end reads (and maybe writes) it.
//
// Every call enters the snapshot's I/O gate: after destroy, calls fail with not_found instead of touching
// freed state; after corruption they fail with corrupted. `source` optionally names the device to read
// unchanged chunks from (nbdkit passes its next); by default the origin's own device is used.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "block_device.h"
#include "cbt.h"
#include "status.h"

namespace nbdsnap {

class Snapshot;
class ChunkMap;

class Image {
 public:
  Image(std::shared_ptr<Snapshot> snapshot, std::shared_ptr<ChunkMap> chunks,
        std::shared_ptr<const CbtFrozen> cbt, std::string origin_name);

  const std::string& origin_name() const { return origin_name_; }
  const std::string& snapshot_name() const;
  uint64_t size() const;
  bool writable() const;

  Status read(void* buf, uint64_t len, uint64_t offset, BlockDevice* source = nullptr);
  // Writable snapshots only (read_only otherwise); the origin is never changed.
  Status write(const void* buf, uint64_t len, uint64_t offset, BlockDevice* source = nullptr);
  Status zero(uint64_t offset, uint64_t len, BlockDevice* source = nullptr);
  // Allocation of the frozen view: chunks held in difference storage are data; others as the origin says.
  Status extents(uint64_t offset, uint64_t len, std::vector<Extent>& out, BlockDevice* source = nullptr);

  // The frozen CBT of this image (generation, number, map).
  const CbtFrozen& cbt() const { return *cbt_; }
  // Ranges changed between `checkpoint` and this snapshot, clipped to [offset, offset+len). The checkpoint
  // must belong to the same generation and be older than this snapshot: checkpoint_gone if this snapshot's
  // CBT had dropped it, not_found otherwise.
  Status changed_since(const std::string& checkpoint, uint64_t offset, uint64_t len,
                       std::vector<Range>& out) const;
  // Checkpoints that changed_since accepts, oldest first.
  std::vector<std::string> usable_checkpoints() const;

 private:
  std::shared_ptr<Snapshot> snapshot_;
  std::shared_ptr<ChunkMap> chunks_;
  std::shared_ptr<const CbtFrozen> cbt_;
  std::string origin_name_;
};

}  // namespace nbdsnap
