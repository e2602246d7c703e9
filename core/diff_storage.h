// SPDX-License-Identifier: BSD-3-Clause
// diff_storage.h — difference storage of one snapshot: a pool of areas (whole files or block devices, or
// ranges of them) holding old chunks, with a limit, run-time append and a low-free-space signal.
//
// Space is handed out by a bump allocator, area after area; a piece never straddles two areas. Chunks are
// never freed individually: storage lives as long as the snapshot (like blksnap's difference storage).
//
// Ranges. blksnap v4 takes any sector ranges of any block devices; so does an area here (storage_spec.h). A
// file is opened once per process, however many ranges of it are in use: file_lock.h locks an open file
// exclusively, and a second open of it would be refused as "already used here". So a range of a file that
// this pool, or another snapshot's pool (the engine's lookup), already has open shares that device; the lock
// then covers every range, and lasts until the last area using the device lets go of it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "block_device.h"
#include "direct_io.h"
#include "disk_use.h"
#include "info.h"
#include "mutex.h"
#include "status.h"
#include "storage_spec.h"

namespace nbdsnap {

struct StorageLocation {
  uint32_t area = 0;
  uint64_t offset = 0;  // in the area
};

// The file system an origin's writes take blocks from, as far as the engine can tell: what decides whether an
// origin write that met ENOSPC may take the snapshot's difference storage back (Snapshot::give_up_storage).
struct OriginFileSystem {
  enum class Kind {
    unknown,       // no file known behind the origin (the filter over other plugins, test doubles)
    file_system,   // a regular file on the file system `device` (st_dev)
    block_device,  // a block device: it takes no blocks from a file system
  };
  Kind kind = Kind::unknown;
  uint64_t device = 0;  // st_dev of the file system; kind file_system only

  // Of the origin's device when it is a regular file (fstat'ed once, here); otherwise of its identity:
  // `file_identity` (Origin::file_identity(), which also names a device-less origin's file: the filter), or
  // the device's own when that is empty. A loop device's identity is its backing file's.
  static OriginFileSystem of(const BlockDevice* origin, const std::string& file_identity);
};

// A device already open as difference storage elsewhere in the engine, by file identity (null: none).
using OpenStorageLookup = std::function<std::shared_ptr<BlockDevice>(const std::string& identity)>;

// What the engine requires of a new area.
struct AreaRequirements {
  std::vector<DiskUse> in_use;       // origins and other snapshots' storage: no byte of these may be used
  OpenStorageLookup open_elsewhere;  // devices other snapshots have open, to share instead of opening again
  uint64_t minimum_size = 0;   // bytes the area must hold at least: one chunk (a piece never straddles areas)
  std::string minimum_reason;  // what minimum_size is, for the message: "one chunk of origin 'disk0'"
};

class DiffStorage {
 public:
  // on_low_space(requested_bytes) is called (without locks held) when free space falls below the threshold;
  // once until storage is appended.
  // wrap_device (may be empty) wraps every device append() opens (EngineConfig::wrap_storage_device); cache
  // is how append() opens files (EngineConfig::storage_cache).
  DiffStorage(uint64_t limit, uint64_t low_space_threshold, std::function<void(uint64_t)> on_low_space,
              std::function<std::shared_ptr<BlockDevice>(std::shared_ptr<BlockDevice>)> wrap_device = {},
              FileCache cache = FileCache::writeback);
  ~DiffStorage();
  DiffStorage(const DiffStorage&) = delete;
  DiffStorage& operator=(const DiffStorage&) = delete;

  // Adds the file, device or range of `spec` to the pool: a size creates (or grows) the file; without one the
  // file or device must exist. A range that overlaps a use in requirements.in_use or an area of this pool is
  // refused with already_exists, before anything is opened. A file or device this pool or
  // requirements.open_elsewhere already has open is shared, not opened again. Errors: invalid_argument (a bad
  // spec, an empty file, an area smaller than requirements.minimum_size), not_found (no such file for a
  // range), out_of_range (a range beyond the end), already_exists, and the errors of opening the file (busy
  // when another process holds it). A file created here is removed again when the append fails.
  Status append(const StorageSpec& spec, const AreaRequirements& requirements = {});
  // Moves every area of `staged` (storage of its own, filled by append() without the engine's control lock)
  // to the end of this pool; `staged` is left empty. REQUIRES: the areas overlap nothing of this pool (the
  // engine checked them against the disks in use). Returns the bytes added.
  uint64_t adopt(DiffStorage& staged) EXCLUDES(mutex_);
  // Adds an already open device (tests inject failing devices this way).
  void append_device(std::shared_ptr<BlockDevice> device, const std::string& label);
  // Reserves `bytes` contiguous bytes; no_space when the areas or the limit are exhausted.
  Status allocate(uint64_t bytes, StorageLocation& out);
  Status write(const StorageLocation& at, const void* buf, uint64_t len, uint64_t offset_in_piece);
  Status read(const StorageLocation& at, void* buf, uint64_t len, uint64_t offset_in_piece);
  // The area allocate() is filling now: a hint (a concurrent allocation may move on to the next area).
  uint32_t filling_area() const EXCLUDES(mutex_);
  // The device holding a piece, and the piece's offset in that device (for sharing extents with it,
  // extent_clone.h); null once released. The caller keeps the device while it uses its file.
  std::shared_ptr<BlockDevice> piece_device(const StorageLocation& at, uint64_t& device_offset) const
      EXCLUDES(mutex_);
  // Empties the files this storage created (extent_clone.h, empty_file()), keeping their size: for a
  // corrupted snapshot whose slots could not be punched on a full file system (ChunkMap::unshare_for_write).
  // Files it did not create keep their bytes. Returns whether a file was emptied.
  bool empty_created_files() EXCLUDES(mutex_);
  // Whether a file this storage created holds allocated blocks (st_blocks > 0) on the origin's file system:
  // the one named by `origin` when known, any file system when unknown, none for a block device. Those are
  // the blocks empty_created_files() would give back to an origin write that met ENOSPC. fstat()s the files
  // without holding the lock.
  bool created_files_hold_blocks(const OriginFileSystem& origin) const EXCLUDES(mutex_);
  // Closes every area and removes the files this storage created.
  void release();

  uint64_t total() const;
  uint64_t used() const;
  uint64_t limit() const { return limit_; }
  uint64_t free_bytes() const;
  std::vector<StorageAreaInfo> areas() const;
  // The range of every area whose device has a file identity, labelled `user` for messages.
  std::vector<DiskUse> disk_uses(const std::string& user) const;
  // The device of an area with this file identity, or null.
  std::shared_ptr<BlockDevice> open_device(const std::string& identity) const;

 private:
  struct Area {
    std::shared_ptr<BlockDevice> device;  // shared with other areas of the same file
    StorageAreaInfo info;                 // info.offset: where the area starts in the device
    std::string identity;                 // the device's file_identity() when it was opened (empty: unknown)
    uint64_t cursor = 0;                  // next free byte, relative to the area's start
  };
  // Opens or creates the device of `spec` (no range checks). `created` tells whether the file is new.
  Status open_spec_device(const StorageSpec& spec, std::shared_ptr<BlockDevice>& out, bool& created);
  // already_exists when [offset, offset+length) of `identity` overlaps in_use or an area of this pool.
  Status check_unused(const StorageSpec& spec, const DiskUse& wanted,
                      const std::vector<DiskUse>& in_use) const EXCLUDES(mutex_);
  uint64_t free_locked() const REQUIRES(mutex_);
  // The devices of the areas this storage created (files it may empty), copied out under the lock.
  std::vector<std::shared_ptr<BlockDevice>> created_devices() const EXCLUDES(mutex_);
  // The no_space error for an allocation of `bytes` that fits no area.
  Status full_status(uint64_t bytes) const REQUIRES(mutex_);
  // The area's device and where the area starts in it (null once released).
  std::shared_ptr<BlockDevice> device_of(uint32_t area, uint64_t& start) const EXCLUDES(mutex_);

  const uint64_t limit_;
  const uint64_t low_space_threshold_;
  const std::function<void(uint64_t)> on_low_space_;
  const std::function<std::shared_ptr<BlockDevice>(std::shared_ptr<BlockDevice>)> wrap_device_;
  const FileCache cache_;
  mutable Mutex mutex_;  // a leaf lock (core/lock_order.h); never held across I/O or on_low_space_
  std::vector<Area> areas_ GUARDED_BY(mutex_);  // only grows until release()
  size_t current_ GUARDED_BY(mutex_) = 0;       // area the allocator is filling
  uint64_t used_ GUARDED_BY(mutex_) = 0;
  bool low_space_signalled_ GUARDED_BY(mutex_) = false;
};

}  // namespace nbdsnap
