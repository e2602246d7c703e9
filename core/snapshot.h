// snapshot.h — one snapshot: its origins, difference storage, per-origin chunk maps and frozen CBT, its
// state (created -> taken, corrupted at any time after), the image I/O gate and the writeback thread.
//
// The Engine orchestrates take and destroy across origins; a Snapshot only keeps its own state consistent.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "buffer_budget.h"
#include "cbt.h"
#include "chunk_map.h"
#include "diff_storage.h"
#include "engine.h"
#include "events.h"
#include "io_gate.h"

namespace nbdsnap {

class Snapshot {
 public:
  Snapshot(std::string name, const SnapshotOptions& options, const EngineConfig& config, EventLog& events,
           std::shared_ptr<BufferBudget> budget);
  ~Snapshot();  // shutdown()
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  const std::string& name() const { return name_; }
  bool writable() const { return writable_; }
  SnapshotState state() const;

  // --- membership (before take) ---
  std::vector<std::string> origins() const;
  Status add_origin(const std::string& origin);
  Status remove_origin(const std::string& origin);

  // --- take (the engine holds every origin frozen while calling these) ---
  void install(const std::string& origin, std::shared_ptr<ChunkMap> chunks, std::shared_ptr<const CbtFrozen> cbt);
  void mark_taken();
  // The chunk map and frozen CBT of an origin once taken (null if absent or dropped).
  std::shared_ptr<ChunkMap> chunk_map(const std::string& origin) const;
  std::shared_ptr<const CbtFrozen> frozen_cbt(const std::string& origin) const;
  // Detaching an origin by force removes its image.
  void drop_origin(const std::string& origin);

  // --- what chunk maps need ---
  DiffStorage& storage() { return storage_; }
  BufferBudget& budget() { return *budget_; }
  void queue_writeback(std::shared_ptr<ChunkMap> chunks, uint64_t index);
  bool is_corrupted() const { return corrupted_.load(); }
  std::string corruption_reason() const;
  // Marks the snapshot corrupted (first reason wins) and posts a corrupted event.
  void corrupt(const std::string& origin, const std::string& reason);

  IoGate& image_gate() { return image_gate_; }
  // Appends storage (see DiffStorage::append for in_use) and posts storage_appended.
  Status append_storage(const StorageSpec& spec, const std::vector<std::string>& in_use);
  // Stops writeback and releases difference storage. REQUIRES: no more I/O (gates closed/cleared).
  void shutdown();
  SnapshotInfo info() const;

 private:
  void writeback_loop();

  const std::string name_;
  const bool writable_;
  EventLog& events_;
  const std::shared_ptr<BufferBudget> budget_;
  DiffStorage storage_;
  IoGate image_gate_;
  std::atomic<bool> corrupted_{false};

  mutable std::mutex mutex_;
  SnapshotState state_ = SnapshotState::created;                       // GUARDED_BY(mutex_)
  std::vector<std::string> origins_;                                    // GUARDED_BY(mutex_)
  std::map<std::string, std::shared_ptr<ChunkMap>> chunk_maps_;         // GUARDED_BY(mutex_)
  std::map<std::string, std::shared_ptr<const CbtFrozen>> frozen_cbt_;  // GUARDED_BY(mutex_)
  std::string corruption_reason_;                                       // GUARDED_BY(mutex_)
  int64_t taken_unix_ms_ = 0;                                           // GUARDED_BY(mutex_)

  std::mutex writeback_mutex_;
  std::condition_variable writeback_wake_;
  std::deque<std::pair<std::shared_ptr<ChunkMap>, uint64_t>> writeback_queue_;  // GUARDED_BY(writeback_mutex_)
  bool writeback_stop_ = false;                                 // GUARDED_BY(writeback_mutex_)
  std::thread writeback_thread_;
};

}  // namespace nbdsnap
