// SPDX-License-Identifier: BSD-3-Clause
// chunk_map.h — the copy-on-write state of one origin in one snapshot: only chunks touched since the take.
//
// Design notes. A chunk absent from the map still holds its take-time data on the origin. Before the first
// write to a chunk, copy_before_write() inserts it as `copying`, reads the old data from the origin into a
// buffer, and marks it `in_memory` (queued for background writeback) or, when the engine-wide buffer budget
// is spent, writes it to difference storage itself (`stored`). Concurrent writers of one chunk copy it once:
// the later ones wait for that chunk's copy only; writes to other chunks never wait. A failed read, storage
// write or allocation marks the chunk `failed` and corrupts the snapshot; the origin write goes on regardless
// (invariant 2). Where origin and storage are files on one file system that shares extents, the chunk is
// cloned into its storage slot instead (extent_clone.h): synchronously, straight to `stored`, before the
// origin write proceeds; a pair that cannot share copies as above. Whatever happens, a chunk never stays
// `copying` or `storing`: the thread that moved it there holds a claim (CopyClaim, or the guard in
// store_chunk) whose destructor marks it failed if the copy did not finish, also when an exception unwinds
// through it (invariant 5).
//
// Waiting. Waiters of a chunk sleep on one of kWaitStripes condition variables chosen by the chunk's index,
// and a finished copy wakes only that stripe: with 16 writers on different chunks, a finished copy does not
// wake the other 15 (one condition variable per map did, and each woken writer took the map's mutex to find
// its chunk still copying). Waiters re-check their own chunk's state, so sharing a stripe costs a spurious
// wake-up at worst, never a lost one: the state changes and the notify happen under the map's mutex.
//
// Image reads never lock across I/O. For a chunk that looks absent they read the origin and then look again:
// a writer inserts the chunk *before* it changes the origin, so if the chunk is still absent after the read,
// no write touched those bytes during it. Otherwise the read is redone from the copy. The snapshot's
// corrupted flag is checked after the read too, because once corrupted, writers stop copying. Consecutive
// absent chunks are read in one origin read and looked at again under one lock: an image read then costs
// what an origin read costs (one pread per request), and an extents query asks the origin once per run of
// absent chunks, not once per chunk (a 128 MiB NBD_CMD_BLOCK_STATUS of an image took 1.5 ms with two lseeks
// per 256 KiB chunk, the origin's 45 us). The look-up of a run holds the lock for at most kMaxChunksPerScan
// chunks.
//
// Locks: mutex_ is a leaf (core/lock_order.h). Nothing that takes another lock — the snapshot's state, its
// storage, the event log — is called while it is held.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "block_device.h"
#include "diff_storage.h"
#include "extent_clone.h"
#include "io_counters.h"
#include "io_gate.h"
#include "mutex.h"
#include "status.h"

namespace nbdsnap {

class Snapshot;

enum class ChunkState { copying, in_memory, storing, stored, failed };

class ChunkMap : public std::enable_shared_from_this<ChunkMap> {
 public:
  // REQUIRES: the snapshot outlives the map's use for copy-on-write (the engine clears trackers' targets
  // before a snapshot goes).
  // copy_read_size: each read of the origin that copies a chunk is at most this large (sizing.h's
  // copy_read_size()). REQUIRES: chunk_size and copy_read_size are not 0.
  // counters: the origin's (io_counters.h), where chunks copied and copy time are added; null: counted
  // nowhere. reflink: whether chunks may be preserved by sharing extents (extent_clone.h); log_info (may be
  // empty) receives its decisions, one line each. origin_file_identity: Origin::file_identity(), which names
  // the file system origin writes take blocks from when origin_device is null (give_up_storage_for_write).
  ChunkMap(Snapshot& snapshot, std::string origin_name, std::shared_ptr<BlockDevice> origin_device,
           uint64_t origin_size, uint64_t chunk_size, uint64_t copy_read_size,
           std::shared_ptr<OriginCounters> counters = nullptr, ReflinkMode reflink = ReflinkMode::off,
           std::function<void(const std::string&)> log_info = {},
           const std::string& origin_file_identity = {});
  ~ChunkMap();
  ChunkMap(const ChunkMap&) = delete;
  ChunkMap& operator=(const ChunkMap&) = delete;

  const std::string& origin_name() const { return origin_name_; }
  uint64_t origin_size() const { return origin_size_; }
  uint64_t chunk_size() const { return chunk_size_; }

  // Copies every not-yet-copied chunk of [offset, offset+len) before the origin is written there.
  // `source` reads the origin (null: the origin device). Never fails and never throws: failures (I/O,
  // allocation) corrupt the snapshot.
  void copy_before_write(uint64_t offset, uint64_t len, BlockDevice* source) noexcept EXCLUDES(mutex_);
  // Reads take-time data; waits while a chunk it covers is being copied.
  Status read(void* buf, uint64_t len, uint64_t offset, BlockDevice* source) EXCLUDES(mutex_);
  // Writes into the snapshot's copy (writable snapshots); buf == nullptr writes zeroes.
  Status write(const void* buf, uint64_t len, uint64_t offset, BlockDevice* source) EXCLUDES(mutex_);
  Status extents(uint64_t offset, uint64_t len, std::vector<Extent>& out, BlockDevice* source)
      EXCLUDES(mutex_);

  // The origin write of [offset, offset+len) failed for want of space (ENOSPC) on the origin's file system.
  // A chunk there whose old data shares extents with its slot (extent_clone.h) makes an origin write need new
  // blocks where an overwrite in place would not, so the snapshot must give way (invariant 2): corrupts it,
  // then punches those slots so that the origin holds its blocks alone again. Returns whether a slot was
  // punched, by this call or by another writer's before it (then the caller writes once more). REQUIRES: the
  // caller is inside the origin's write gate.
  bool unshare_for_write(uint64_t offset, uint64_t len) noexcept EXCLUDES(mutex_, unshare_mutex_);
  // The origin write failed with ENOSPC and no shared slot was given back: when the snapshot's storage files
  // hold blocks on the origin's file system (any file system when the engine cannot tell which the origin's
  // is, as in the nbdkit filter), the snapshot is corrupted and gives them back (Snapshot::give_up_storage).
  // True: write once more. REQUIRES: the caller is inside the origin's write gate, holding no lock.
  bool give_up_storage_for_write() noexcept;

  // Writes a chunk held in memory to difference storage (the snapshot's writeback thread calls this).
  void store_chunk(uint64_t index) noexcept EXCLUDES(mutex_);
  // Frees the old data held in memory and gives its buffer budget back: the snapshot was destroyed, or the
  // origin dropped, so nobody reads it again (invariant 4: a client that keeps a destroyed image open must
  // not keep its buffers). REQUIRES: no image call and no copy-on-write into this map any more.
  void release_buffers() noexcept EXCLUDES(mutex_);

  // Drops the map (its origin was detached): waits for image calls in flight, fails every later one with
  // not_found, and lets go of the origin's device and of the old data held in memory. REQUIRES: no
  // copy-on-write into this map any more (the origin's write gate is closed).
  void drop();
  bool dropped() const { return dropped_.load(std::memory_order_acquire); }

  // Chunks whose old data is preserved (in difference storage, or read and waiting in memory to be stored):
  // not those being copied, nor those whose copy or store failed.
  uint64_t chunks_copied() const EXCLUDES(mutex_);
  uint64_t memory_bytes() const EXCLUDES(mutex_);
  // Reads of this image that succeeded, and their bytes (io_counters.h).
  ImageCounterValues image_counters() const { return image_counters_.values(); }

 private:
  static constexpr size_t kWaitStripes = 64;
  // Chunks one look-up of untouched chunks checks while it holds mutex_ (copy-on-write waits for the lock
  // meanwhile): 256 MiB of 256 KiB chunks, more than one NBD request reads.
  static constexpr uint64_t kMaxChunksPerScan = 1024;
  struct Chunk {
    ChunkState state = ChunkState::copying;
    std::shared_ptr<const uint8_t[]> buffer;  // in_memory/storing: the old data, chunk_length() bytes
    StorageLocation location;                 // stored
    bool cloned = false;                      // stored by sharing extents with the origin
    bool punched = false;                     // cloned, and its slot given back (unshare_for_write)
  };
  class CopyClaim;

  uint64_t chunk_length(uint64_t index) const;
  // The bytes of storage a chunk takes: its length, rounded up to the block size while extents may be shared
  // (so that the next slot stays aligned for FICLONERANGE).
  uint64_t slot_length(uint64_t index) const;
  BlockDevice* origin_reader(BlockDevice* source) const;
  CondVar& waiters_of(uint64_t index) { return chunk_done_[index % kWaitStripes]; }
  // Ensures the chunk is copied (or failed). May throw std::bad_alloc before it claimed the chunk.
  void ensure_copied(uint64_t index, BlockDevice* source) EXCLUDES(mutex_);
  void copy_chunk(uint64_t index, BlockDevice* source, CopyClaim& claim) EXCLUDES(mutex_);
  // Preserves the chunk by sharing extents (extent_clone.h) and settles the claim: true. False when this
  // origin and the storage being filled do not share extents: then nothing was done, copy it.
  bool share_chunk(uint64_t index, BlockDevice* source, CopyClaim& claim) EXCLUDES(mutex_);
  // Reads the chunk from the origin and writes it to its slot at `location`, synchronously.
  Status copy_into_slot(uint64_t index, BlockDevice* source, const StorageLocation& location);
  Status read_piece(uint8_t* buf, uint64_t len, uint64_t offset, BlockDevice* source);
  // The next piece of a read or extents query of [offset, offset+len), len > 0: the untouched chunks from
  // `offset` on (the origin answers for all of them at once), or the rest of one touched chunk. Takes the
  // lock for the look-up only.
  struct Piece {
    uint64_t length;
    bool untouched;
  };
  Piece next_piece(uint64_t offset, uint64_t len) const EXCLUDES(mutex_);
  // How many chunks from `first` on are absent from the map (untouched since the take: the origin still holds
  // their take-time data), counting up to `last` and at most kMaxChunksPerScan of them.
  uint64_t untouched_chunks(uint64_t first, uint64_t last) const REQUIRES(mutex_);
  // The first chunk of [first, last] present in the map; last + 1 when there is none.
  uint64_t first_touched(uint64_t first, uint64_t last) const REQUIRES(mutex_);
  // Reads [offset, offset+len), which a moment ago lay in untouched chunks only, from the origin in one read;
  // then reads again, from their copies, the chunks a writer touched meanwhile.
  Status read_untouched(uint8_t* out, uint64_t len, uint64_t offset, BlockDevice* source) EXCLUDES(mutex_);
  // Reads [in_chunk, in_chunk+len) of chunk `index`, present in the map, from its copy: in memory or in
  // difference storage; waits while it is being copied.
  Status read_touched(uint64_t index, uint8_t* out, uint64_t len, uint64_t in_chunk) EXCLUDES(mutex_);
  // The extents of [offset, offset+len), which a moment ago lay in untouched chunks only: as the origin
  // reports them, except for chunks a writer touched meanwhile (data: the origin's answer may describe new
  // data). Appended through `add(offset, length, hole)`.
  template <typename Add>
  void untouched_extents(uint64_t offset, uint64_t len, BlockDevice* origin, Add&& add) EXCLUDES(mutex_);
  Status ensure_stored(uint64_t index, StorageLocation& location) EXCLUDES(mutex_);
  Status store_buffer(uint64_t index, const uint8_t* buffer, StorageLocation& location);
  // Counts a chunk whose old data reached difference storage (io_counters.h: failed copies are not counted).
  void count_stored(uint64_t index) noexcept;
  // Moves a claimed chunk to its final state and wakes its waiters.
  void finish_chunk(uint64_t index, ChunkState state, std::shared_ptr<const uint8_t[]> buffer,
                    StorageLocation location, bool cloned = false) noexcept EXCLUDES(mutex_);
  // Corrupts the snapshot with `reason`, then marks the chunk failed: a reader that sees the chunk failed
  // also sees the snapshot corrupted.
  void fail_chunk(uint64_t index, Errc code, std::string_view reason) noexcept EXCLUDES(mutex_);
  // not_found once dropped, corrupted once the snapshot is; ok otherwise. Takes the snapshot's lock.
  Status snapshot_health() const EXCLUDES(mutex_);
  // The error for a chunk found failed.
  Status failed_chunk_status() const EXCLUDES(mutex_);

  Snapshot& snapshot_;
  const std::string origin_name_;
  std::shared_ptr<BlockDevice> origin_device_;  // reset by drop(), once no image call is inside image_io_
  const uint64_t origin_size_;
  const uint64_t chunk_size_;
  const uint64_t copy_read_size_;
  ExtentSharing sharing_;
  const uint64_t slot_alignment_;  // sharing_.slot_alignment() of the origin device and chunk size
  const OriginFileSystem origin_file_system_;  // where origin writes take blocks from (give_up_storage)
  std::atomic<bool> dropped_{false};
  const std::shared_ptr<OriginCounters>
      counters_;  // the origin's; shared as the origin may be detached first
  ImageCounters image_counters_;
  IoGate image_io_;  // image calls (read, write, extents); closed by drop()
  // Serialises unshare_for_write(): a writer that met ENOSPC while another writer of the same chunk was
  // punching its slot waits for that punch before it writes again (core/lock_order.h, 3b).
  Mutex unshare_mutex_ ACQUIRED_BEFORE(mutex_);
  mutable Mutex mutex_;
  std::array<CondVar, kWaitStripes> chunk_done_;  // waiters of chunks whose index % kWaitStripes is i
  std::unordered_map<uint64_t, Chunk> chunks_ GUARDED_BY(mutex_);
  uint64_t buffered_bytes_ GUARDED_BY(mutex_) = 0;
  uint64_t copied_chunks_ GUARDED_BY(mutex_) = 0;  // entries in_memory, storing or stored
};

}  // namespace nbdsnap
