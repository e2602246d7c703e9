// SPDX-License-Identifier: BSD-3-Clause
// snapshot.h — one snapshot: its origins, difference storage, per-origin chunk maps and frozen CBT, its
// state (created -> taken, corrupted at any time after), the image I/O gate and the writeback thread.
//
// The Engine orchestrates take and destroy across origins; a Snapshot only keeps its own state consistent.
// Locks (core/lock_order.h): mutex_ comes after the engine's locks and is never held while calling a chunk
// map, the storage or the event log; writeback_mutex_ is a leaf.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "buffer_budget.h"
#include "cbt.h"
#include "chunk_map.h"
#include "diff_storage.h"
#include "engine_stats.h"
#include "events.h"
#include "info.h"
#include "io_gate.h"
#include "mutex.h"
#include "options.h"

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
  SnapshotState state() const EXCLUDES(mutex_);

  // --- membership (before take) ---
  std::vector<std::string> origins() const EXCLUDES(mutex_);
  Status add_origin(const std::string& origin) EXCLUDES(mutex_);
  Status remove_origin(const std::string& origin) EXCLUDES(mutex_);

  // --- take (the engine holds every origin frozen while calling this) ---
  struct Member {
    std::string origin;
    std::shared_ptr<ChunkMap> chunks;
    std::shared_ptr<const CbtFrozen> cbt;
  };
  // Installs every origin's chunk map and frozen CBT and marks the snapshot taken at taken_unix_ms (the time
  // its checkpoints carry), all or nothing: on std::bad_alloc nothing has changed.
  void install_and_mark_taken(std::vector<Member> members, int64_t taken_unix_ms) EXCLUDES(mutex_);
  // The chunk map and frozen CBT of an origin once taken (null if absent or dropped).
  std::shared_ptr<ChunkMap> chunk_map(const std::string& origin) const EXCLUDES(mutex_);
  std::shared_ptr<const CbtFrozen> frozen_cbt(const std::string& origin) const EXCLUDES(mutex_);
  // Detaching an origin by force removes its image.
  void drop_origin(const std::string& origin) EXCLUDES(mutex_);

  // --- what chunk maps need ---
  DiffStorage& storage() { return storage_; }
  BufferBudget& budget() { return *budget_; }
  // May throw std::bad_alloc (the caller then writes the chunk back itself).
  void queue_writeback(std::shared_ptr<ChunkMap> chunks, uint64_t index) EXCLUDES(writeback_mutex_);
  bool is_corrupted() const { return corrupted_.load(); }
  std::string corruption_reason() const EXCLUDES(mutex_);
  // Marks the snapshot corrupted because `origin` failed with `code` (first reason wins) and posts a
  // corrupted event with the errno of `code` (to_errno). Records the first failure of each origin for info().
  // Never throws: it runs on the copy-on-write path, also after an allocation failed (the flag is set first,
  // without allocating).
  void corrupt(std::string_view origin, Errc code, std::string_view reason) noexcept EXCLUDES(mutex_);

  // A write to `origin` (on `file_system`) failed with ENOSPC: if files this snapshot created hold blocks on
  // that file system (any, when it is unknown: DiffStorage::created_files_hold_blocks), the space may be
  // ours, and invariant 2 puts the origin write first. Corrupts the snapshot (no_space, first reason wins)
  // *before* emptying those files (DiffStorage::empty_created_files), so an image read that meets an emptied
  // slot fails instead of returning zeroes (invariant 1). Returns true when the caller should write once
  // more: storage was given back now, or by an earlier writer (whose emptying has finished: the calls are
  // serialised). Storage on another file system, or given by the user as an existing file, is never touched.
  // Never throws. Takes give_up_mutex_, then Snapshot::mutex_ and the storage's lock (core/lock_order.h).
  bool give_up_storage(std::string_view origin, const OriginFileSystem& file_system) noexcept
      EXCLUDES(give_up_mutex_, mutex_);

  // Records what the take cost the origins' writers (SnapshotInfo::take_hold_us, take_drain_us).
  void record_take_hold(uint64_t hold_us, uint64_t drain_us) EXCLUDES(mutex_);

  IoGate& image_gate() { return image_gate_; }
  // Appends storage (see DiffStorage::append for the requirements) and posts storage_appended.
  Status append_storage(const StorageSpec& spec, const AreaRequirements& requirements);
  // Moves the areas of `staged` (storage appended aside, DiffStorage::adopt) into this snapshot's storage
  // and posts storage_appended for `spec`.
  void adopt_storage(DiffStorage& staged, const StorageSpec& spec);
  // Stops writeback: chunks still queued are dropped, and the writeback thread is joined (it may be waiting
  // for a stalled storage write). Idempotent. REQUIRES: no more I/O (gates closed/cleared); one caller at a
  // time (destroy, or the destructor).
  void stop_writeback() EXCLUDES(writeback_mutex_);
  // stop_writeback(), then releases chunk buffers and difference storage (closing it, removing the files the
  // engine created). Idempotent. REQUIRES: as stop_writeback().
  void shutdown() EXCLUDES(writeback_mutex_);
  SnapshotInfo info() const EXCLUDES(mutex_);
  // Storage space and image counters (Engine::stats).
  SnapshotStats stats() const EXCLUDES(mutex_);

 private:
  void writeback_loop() EXCLUDES(writeback_mutex_);

  const std::string name_;
  const bool writable_;
  EventLog& events_;
  const std::shared_ptr<BufferBudget> budget_;
  DiffStorage storage_;
  IoGate image_gate_;
  std::atomic<bool> corrupted_{false};

  mutable Mutex mutex_;
  SnapshotState state_ GUARDED_BY(mutex_) = SnapshotState::created;
  std::vector<std::string> origins_ GUARDED_BY(mutex_);
  std::map<std::string, std::shared_ptr<ChunkMap>> chunk_maps_ GUARDED_BY(mutex_);
  std::map<std::string, std::shared_ptr<const CbtFrozen>> frozen_cbt_ GUARDED_BY(mutex_);
  std::string corruption_reason_ GUARDED_BY(mutex_);
  std::map<std::string, OriginError, std::less<>> origin_errors_
      GUARDED_BY(mutex_);  // first failure per origin
  int64_t taken_unix_ms_ GUARDED_BY(mutex_) = 0;
  uint64_t take_hold_us_ GUARDED_BY(mutex_) = 0;
  uint64_t take_drain_us_ GUARDED_BY(mutex_) = 0;

  // Held across the check, the corruption and the emptying in give_up_storage(): a writer that met ENOSPC
  // while another was emptying the files waits until the blocks are back, then writes again (3c in
  // core/lock_order.h). Held across ftruncate on purpose: that wait is what makes the retry succeed.
  Mutex give_up_mutex_ ACQUIRED_BEFORE(mutex_);
  bool storage_given_up_ GUARDED_BY(give_up_mutex_) = false;

  Mutex writeback_mutex_;
  CondVar writeback_wake_;
  std::deque<std::pair<std::shared_ptr<ChunkMap>, uint64_t>> writeback_queue_ GUARDED_BY(writeback_mutex_);
  bool writeback_stop_ GUARDED_BY(writeback_mutex_) = false;
  std::thread writeback_thread_;
};

}  // namespace nbdsnap
