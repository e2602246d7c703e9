// diff_storage.h — difference storage of one snapshot: a pool of areas (files or block devices) holding
// old chunks, with a limit, run-time append and a low-free-space signal.
//
// Space is handed out by a bump allocator, area after area; a piece never straddles two areas. Chunks are
// never freed individually: storage lives as long as the snapshot (like blksnap's difference storage).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "block_device.h"
#include "engine.h"
#include "mutex.h"
#include "status.h"

namespace nbdsnap {

struct StorageLocation {
  uint32_t area = 0;
  uint64_t offset = 0;
};

class DiffStorage {
 public:
  // on_low_space(requested_bytes) is called (without locks held) when free space falls below the threshold;
  // once until storage is appended.
  // wrap_device (may be empty) wraps every device append() opens (EngineConfig::wrap_storage_device).
  DiffStorage(uint64_t limit, uint64_t low_space_threshold, std::function<void(uint64_t)> on_low_space,
              std::function<std::shared_ptr<BlockDevice>(std::shared_ptr<BlockDevice>)> wrap_device = {});
  ~DiffStorage();
  DiffStorage(const DiffStorage&) = delete;
  DiffStorage& operator=(const DiffStorage&) = delete;

  // Opens or creates the file/device and adds it to the pool. A file whose file_identity() is in `in_use`
  // (origins, other snapshots' storage) or already in this pool is refused with already_exists.
  Status append(const StorageSpec& spec, const std::vector<std::string>& in_use = {});
  // Adds an already open device (tests inject failing devices this way).
  void append_device(std::shared_ptr<BlockDevice> device, const std::string& label);
  // Reserves `bytes` contiguous bytes; no_space when the areas or the limit are exhausted.
  Status allocate(uint64_t bytes, StorageLocation& out);
  Status write(const StorageLocation& at, const void* buf, uint64_t len, uint64_t offset_in_piece);
  Status read(const StorageLocation& at, void* buf, uint64_t len, uint64_t offset_in_piece);
  // Closes every area and removes the files this storage created.
  void release();

  uint64_t total() const;
  uint64_t used() const;
  uint64_t limit() const { return limit_; }
  uint64_t free_bytes() const;
  std::vector<StorageAreaInfo> areas() const;
  // file_identity() of every area that has one.
  std::vector<std::string> file_identities() const;

 private:
  struct Area {
    std::shared_ptr<BlockDevice> device;
    StorageAreaInfo info;
    std::string identity;  // the device's file_identity() when it was opened (empty: unknown)
    uint64_t cursor = 0;   // next free byte
  };
  uint64_t free_locked() const REQUIRES(mutex_);
  std::shared_ptr<BlockDevice> device_of(uint32_t area) const EXCLUDES(mutex_);

  const uint64_t limit_;
  const uint64_t low_space_threshold_;
  const std::function<void(uint64_t)> on_low_space_;
  const std::function<std::shared_ptr<BlockDevice>(std::shared_ptr<BlockDevice>)> wrap_device_;
  mutable Mutex mutex_;  // a leaf lock (core/lock_order.h); never held across I/O or on_low_space_
  std::vector<Area> areas_ GUARDED_BY(mutex_);  // only grows until release()
  size_t current_ GUARDED_BY(mutex_) = 0;       // area the allocator is filling
  uint64_t used_ GUARDED_BY(mutex_) = 0;
  bool low_space_signalled_ GUARDED_BY(mutex_) = false;
};

}  // namespace nbdsnap
