// SPDX-License-Identifier: BSD-3-Clause
// snapshot.cpp — snapshot state, corruption, and the background writeback of buffered chunks.
#include "snapshot.h"

#include <algorithm>
#include <chrono>
#include <new>

namespace nbdsnap {

const char* snapshot_state_name(SnapshotState state) {
  switch (state) {
    case SnapshotState::created:
      return "created";
    case SnapshotState::taken:
      return "taken";
    case SnapshotState::corrupted:
      return "corrupted";
  }
  return "unknown";
}

Snapshot::Snapshot(std::string name, const SnapshotOptions& options, const EngineConfig& config,
                   EventLog& events, std::shared_ptr<BufferBudget> budget)
    : name_(std::move(name)),
      writable_(options.writable),
      events_(events),
      budget_(std::move(budget)),
      storage_(
          options.limit, config.low_space_threshold,
          [this](uint64_t requested) {
            Event e;
            e.type = EventType::low_free_space;
            e.snapshot = name_;
            e.requested_bytes = requested;
            e.reason = "difference storage is running out of free space";
            events_.post(std::move(e));
          },
          config.wrap_storage_device, config.storage_cache),
      origins_(options.origins) {
  writeback_thread_ = std::thread([this] { writeback_loop(); });
}

Snapshot::~Snapshot() {
  shutdown();
}

SnapshotState Snapshot::state() const {
  MutexLock lock(mutex_);
  return corrupted_ ? SnapshotState::corrupted : state_;
}

std::vector<std::string> Snapshot::origins() const {
  MutexLock lock(mutex_);
  return origins_;
}

Status Snapshot::add_origin(const std::string& origin) {
  MutexLock lock(mutex_);
  if (state_ != SnapshotState::created) return {Errc::bad_state, "snapshot '" + name_ + "' is already taken"};
  if (std::find(origins_.begin(), origins_.end(), origin) != origins_.end()) {
    return {Errc::already_exists, "origin '" + origin + "' is already in snapshot '" + name_ + "'"};
  }
  origins_.push_back(origin);
  return Status::ok();
}

Status Snapshot::remove_origin(const std::string& origin) {
  MutexLock lock(mutex_);
  if (state_ != SnapshotState::created) return {Errc::bad_state, "snapshot '" + name_ + "' is already taken"};
  auto it = std::find(origins_.begin(), origins_.end(), origin);
  if (it == origins_.end())
    return {Errc::not_found, "origin '" + origin + "' is not in snapshot '" + name_ + "'"};
  origins_.erase(it);
  return Status::ok();
}

void Snapshot::install_and_mark_taken(std::vector<Member> members, int64_t taken_unix_ms) {
  // Build the new maps aside (this may throw), then swap them in (this cannot).
  MutexLock lock(mutex_);
  auto chunk_maps = chunk_maps_;
  auto frozen_cbt = frozen_cbt_;
  for (Member& member : members) {
    chunk_maps[member.origin] = std::move(member.chunks);
    frozen_cbt[member.origin] = std::move(member.cbt);
  }
  chunk_maps_.swap(chunk_maps);
  frozen_cbt_.swap(frozen_cbt);
  state_ = SnapshotState::taken;
  taken_unix_ms_ = taken_unix_ms;
}

void Snapshot::record_take_hold(uint64_t hold_us, uint64_t drain_us) {
  MutexLock lock(mutex_);
  take_hold_us_ = hold_us;
  take_drain_us_ = drain_us;
}

std::shared_ptr<ChunkMap> Snapshot::chunk_map(const std::string& origin) const {
  MutexLock lock(mutex_);
  auto it = chunk_maps_.find(origin);
  return it == chunk_maps_.end() ? nullptr : it->second;
}

std::shared_ptr<const CbtFrozen> Snapshot::frozen_cbt(const std::string& origin) const {
  MutexLock lock(mutex_);
  auto it = frozen_cbt_.find(origin);
  return it == frozen_cbt_.end() ? nullptr : it->second;
}

void Snapshot::drop_origin(const std::string& origin) {
  std::shared_ptr<ChunkMap> dropped;
  {
    MutexLock lock(mutex_);
    origins_.erase(std::remove(origins_.begin(), origins_.end(), origin), origins_.end());
    auto it = chunk_maps_.find(origin);
    if (it != chunk_maps_.end()) {
      dropped = it->second;
      chunk_maps_.erase(it);
    }
    frozen_cbt_.erase(origin);
  }
  // Images still holding the map see it dropped; writeback entries for it stay valid (the map lives on).
  if (dropped) dropped->drop();
}

void Snapshot::queue_writeback(std::shared_ptr<ChunkMap> chunks, uint64_t index) {
  MutexLock lock(writeback_mutex_);
  writeback_queue_.emplace_back(std::move(chunks), index);
  writeback_wake_.notify_one();
}

void Snapshot::writeback_loop() {
  for (;;) {
    std::pair<std::shared_ptr<ChunkMap>, uint64_t> job;
    {
      MutexLock lock(writeback_mutex_);
      while (!writeback_stop_ && writeback_queue_.empty()) writeback_wake_.wait(writeback_mutex_);
      if (writeback_queue_.empty()) return;  // stopping and drained
      job = std::move(writeback_queue_.front());
      writeback_queue_.pop_front();
    }
    job.first->store_chunk(job.second);  // noexcept: a failure corrupts the snapshot
  }
}

std::string Snapshot::corruption_reason() const {
  MutexLock lock(mutex_);
  return corruption_reason_;
}

void Snapshot::corrupt(std::string_view origin, Errc code, std::string_view reason) noexcept {
  const int error_code = to_errno(Status(code, std::string()));  // an empty message does not allocate
  {
    MutexLock lock(mutex_);
    const bool first = !corrupted_.load();
    corrupted_.store(true);  // before anything that allocates
    try {
      if (origin_errors_.find(origin) == origin_errors_.end()) {
        origin_errors_.emplace(std::string(origin),
                               OriginError{std::string(origin), error_code, std::string(reason)});
      }
      if (!first) return;  // the first reason wins
      corruption_reason_ = reason;
    } catch (...) {  // out of memory: the reason stays empty, the flag is what keeps images safe
      if (!first) return;
    }
  }
  try {
    Event e;
    e.type = EventType::corrupted;
    e.snapshot = name_;
    e.origin = origin;
    e.reason = reason;
    e.error_code = error_code;
    events_.post(std::move(e));
  } catch (...) {  // out of memory: the event is lost, the state says corrupted
  }
}

bool Snapshot::give_up_storage(std::string_view origin, const OriginFileSystem& file_system) noexcept {
  MutexLock lock(give_up_mutex_);
  // Emptied ones hold no blocks: a second writer finds none and retries on the first one's work.
  if (!storage_.created_files_hold_blocks(file_system)) return storage_given_up_;
  std::string reason;
  try {
    reason = "the file system of origin '" + std::string(origin) +
             "' is full: an origin write met ENOSPC, so the snapshot gave up its difference storage "
             "(the files it created) and origin writes go on";
  } catch (const std::bad_alloc&) {
    // The flag is what keeps images safe; the reason stays empty.
  }
  corrupt(origin, Errc::no_space, reason);  // first: readers of an emptied slot then see it (invariant 1)
  storage_given_up_ = true;
  // Copies in flight may still write a slot after this; they allocate again, and the next ENOSPC of an
  // origin write finds those blocks and empties the files once more.
  storage_.empty_created_files();
  return true;
}

Status Snapshot::append_storage(const StorageSpec& spec, const AreaRequirements& requirements) {
  if (Status s = storage_.append(spec, requirements); !s) return s;
  Event e;
  e.type = EventType::storage_appended;
  e.snapshot = name_;
  e.bytes = storage_.areas().back().size;
  e.reason = spec.path;
  events_.post(std::move(e));
  return Status::ok();
}

void Snapshot::adopt_storage(DiffStorage& staged, const StorageSpec& spec) {
  Event e;
  e.type = EventType::storage_appended;
  e.snapshot = name_;
  e.bytes = storage_.adopt(staged);
  e.reason = spec.path;
  events_.post(std::move(e));
}

void Snapshot::stop_writeback() {
  {
    MutexLock lock(writeback_mutex_);
    if (!writeback_stop_) {
      writeback_stop_ = true;
      // Nobody will read these chunks again: drop them rather than write them out; their buffers go later.
      writeback_queue_.clear();
      writeback_wake_.notify_all();
    }
  }
  if (writeback_thread_.joinable()) writeback_thread_.join();
}

void Snapshot::shutdown() {
  stop_writeback();
  // Images still open elsewhere keep no buffers. Listed first, so that no chunk map is called under mutex_;
  // without the memory to list them (the destructor calls this too, and must not throw), under mutex_:
  // release_buffers() takes only leaf locks (core/lock_order.h).
  std::vector<std::shared_ptr<ChunkMap>> maps;
  try {
    MutexLock lock(mutex_);
    maps.reserve(chunk_maps_.size());
    for (const auto& [origin, chunks] : chunk_maps_) maps.push_back(chunks);
  } catch (const std::bad_alloc&) {
    MutexLock lock(mutex_);
    for (const auto& [origin, chunks] : chunk_maps_) chunks->release_buffers();
  }
  for (const auto& chunks : maps) chunks->release_buffers();
  storage_.release();
}

SnapshotInfo Snapshot::info() const {
  SnapshotInfo out;
  out.name = name_;
  out.writable = writable_;
  out.storage = storage_.areas();
  out.storage_total = storage_.total();
  out.storage_used = storage_.used();
  out.storage_limit = storage_.limit();
  std::vector<std::shared_ptr<ChunkMap>> maps;
  {
    MutexLock lock(mutex_);
    out.state = corrupted_ ? SnapshotState::corrupted : state_;
    out.origins = origins_;
    for (const auto& [origin, chunks] : chunk_maps_) maps.push_back(chunks);
    for (const auto& [origin, cbt] : frozen_cbt_) out.memory_bytes += cbt->map.size();
    out.corruption_reason = corruption_reason_;
    for (const auto& [origin, error] : origin_errors_) out.origin_errors.push_back(error);
    out.taken_unix_ms = taken_unix_ms_;
    out.take_hold_us = take_hold_us_;
    out.take_drain_us = take_drain_us_;
  }
  // Chunk maps take their own lock: never while holding ours (core/lock_order.h).
  for (const auto& chunks : maps) {
    out.chunks_copied += chunks->chunks_copied();
    out.memory_bytes += chunks->memory_bytes();
  }
  return out;
}

SnapshotStats Snapshot::stats() const {
  SnapshotStats out;
  out.name = name_;
  out.storage_total = storage_.total();
  out.storage_used = storage_.used();
  out.storage_free = storage_.free_bytes();
  out.storage_limit = storage_.limit();
  MutexLock lock(mutex_);  // image counters are atomics: read under our lock without taking the maps' locks
  out.state = snapshot_state_name(corrupted_ ? SnapshotState::corrupted : state_);
  for (const auto& [origin, chunks] : chunk_maps_) {
    if (!chunks->dropped()) out.images.push_back({origin, chunks->image_counters()});
  }
  return out;
}

}  // namespace nbdsnap
