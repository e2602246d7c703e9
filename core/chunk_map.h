// chunk_map.h — the copy-on-write state of one origin in one snapshot: only chunks touched since the take.
//
// Design notes. A chunk absent from the map still holds its take-time data on the origin. Before the first
// write to a chunk, copy_before_write() inserts it as `copying`, reads the old data from the origin into a
// buffer, and marks it `in_memory` (queued for background writeback) or, when the engine-wide buffer budget
// is spent, writes it to difference storage itself (`stored`). Concurrent writers of one chunk copy it once:
// the later ones wait on the condition variable only for that chunk's copy; writes to other chunks never
// wait. A failed read or storage write marks the chunk `failed` and corrupts the snapshot; the origin write
// goes on regardless (invariant 2).
//
// Image reads never lock across I/O. For a chunk that looks absent they read the origin and then look again:
// a writer inserts the chunk *before* it changes the origin, so if the chunk is still absent after the read,
// no write touched those bytes during it. Otherwise the read is redone from the copy. The snapshot's
// corrupted flag is checked after the read too, because once corrupted, writers stop copying.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "block_device.h"
#include "diff_storage.h"
#include "status.h"

namespace nbdsnap {

class Snapshot;

enum class ChunkState { copying, in_memory, storing, stored, failed };

class ChunkMap : public std::enable_shared_from_this<ChunkMap> {
 public:
  ChunkMap(Snapshot& snapshot, std::string origin_name, std::shared_ptr<BlockDevice> origin_device,
           uint64_t origin_size, uint64_t chunk_size, uint64_t copy_io_size);
  ~ChunkMap();
  ChunkMap(const ChunkMap&) = delete;
  ChunkMap& operator=(const ChunkMap&) = delete;

  const std::string& origin_name() const { return origin_name_; }
  uint64_t origin_size() const { return origin_size_; }
  uint64_t chunk_size() const { return chunk_size_; }

  // Copies every not-yet-copied chunk of [offset, offset+len) before the origin is written there.
  // `source` reads the origin (null: the origin device). Never fails: failures corrupt the snapshot.
  void copy_before_write(uint64_t len, uint64_t offset, BlockDevice* source);
  // Reads take-time data.
  Status read(void* buf, uint64_t len, uint64_t offset, BlockDevice* source);
  // Writes into the snapshot's copy (writable snapshots); buf == nullptr writes zeroes.
  Status write(const void* buf, uint64_t len, uint64_t offset, BlockDevice* source);
  Status extents(uint64_t len, uint64_t offset, std::vector<Extent>& out, BlockDevice* source);

  // Writes a chunk held in memory to difference storage (the snapshot's writeback thread calls this).
  void store_chunk(uint64_t index);

  // Marks the map as dropped (its origin was detached): every later call fails with not_found.
  void drop();
  bool dropped() const;

  uint64_t chunks_copied() const;
  uint64_t memory_bytes() const;

 private:
  struct Chunk {
    ChunkState state = ChunkState::copying;
    std::shared_ptr<const uint8_t[]> buffer;  // in_memory/storing: the old data, chunk_length() bytes
    StorageLocation location;                            // stored
  };
  uint64_t chunk_length(uint64_t index) const;
  BlockDevice* origin_reader(BlockDevice* source) const;
  // Ensures the chunk is copied (or failed). Returns its state after the copy.
  ChunkState ensure_copied(uint64_t index, BlockDevice* source);
  void copy_chunk(uint64_t index, BlockDevice* source);  // REQUIRES: chunk inserted as copying by caller
  Status read_piece(uint8_t* buf, uint64_t len, uint64_t offset, BlockDevice* source);
  Status ensure_stored(uint64_t index, StorageLocation& location);
  Status store_buffer(uint64_t index, const uint8_t* buffer, StorageLocation& location);
  void finish_chunk(uint64_t index, ChunkState state, std::shared_ptr<const uint8_t[]> buffer,
                    StorageLocation location);
  Status snapshot_health() const;

  Snapshot& snapshot_;
  const std::string origin_name_;
  const std::shared_ptr<BlockDevice> origin_device_;
  const uint64_t origin_size_;
  const uint64_t chunk_size_;
  const uint64_t copy_io_size_;
  mutable std::mutex mutex_;
  std::condition_variable chunk_done_;
  std::unordered_map<uint64_t, Chunk> chunks_;  // GUARDED_BY(mutex_)
  uint64_t buffered_bytes_ = 0;                 // GUARDED_BY(mutex_)
  bool dropped_ = false;                        // GUARDED_BY(mutex_)
};

}  // namespace nbdsnap
