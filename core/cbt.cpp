// SPDX-License-Identifier: BSD-3-Clause
// cbt.cpp — change numbers per tracking block, freezing at take, checkpoints, compaction, generations.
#include "cbt.h"

#include <algorithm>
#include <array>
#include <limits>

#include "sizing.h"

namespace nbdsnap {

namespace {

// Remembers a dropped checkpoint (newest last), forgetting the oldest beyond the bound.
void remember_dropped(std::vector<DroppedCheckpoint>& dropped, DroppedCheckpoint entry) {
  std::erase_if(dropped, [&](const DroppedCheckpoint& d) { return d.name == entry.name; });
  dropped.push_back(std::move(entry));
  if (dropped.size() > kDroppedCheckpointsRemembered) {
    dropped.erase(dropped.begin(), dropped.end() - static_cast<ptrdiff_t>(kDroppedCheckpointsRemembered));
  }
}

// Drops the oldest checkpoints (lowest numbers: numbers grow with takes, and compaction keeps their order)
// until at most `kept` remain. Returns their names, oldest first.
std::vector<std::string> drop_oldest(Checkpoints& checkpoints, std::vector<DroppedCheckpoint>& dropped,
                                     unsigned kept) {
  std::vector<std::string> names;
  while (checkpoints.size() > kept) {
    auto oldest = std::min_element(checkpoints.begin(), checkpoints.end(), [](const auto& a, const auto& b) {
      return a.second.number < b.second.number;
    });
    remember_dropped(dropped,
                     {oldest->first, "only the " + std::to_string(kept) + " newest checkpoints are kept"});
    names.push_back(oldest->first);
    checkpoints.erase(oldest);
  }
  return names;
}

}  // namespace

Status check_checkpoints_kept(uint64_t kept) {
  if (kept < kMinCheckpointsKept || kept > kMaxCheckpointsKept) {
    return {Errc::invalid_argument, "must be " + std::to_string(kMinCheckpointsKept) + ".." +
                                        std::to_string(kMaxCheckpointsKept) + " checkpoints (default " +
                                        std::to_string(kDefaultCheckpointsKept) + ")"};
  }
  return Status::ok();
}

// ---------------------------------------------------------------- views

Status CbtView::find_checkpoint(const std::string& name, Checkpoint& out) const {
  if (auto it = checkpoints.find(name); it != checkpoints.end()) {
    out = it->second;
    return Status::ok();
  }
  for (auto it = dropped.rbegin(); it != dropped.rend(); ++it) {
    if (it->name == name) {
      return {Errc::checkpoint_gone,
              "checkpoint '" + name + "' is gone: " + it->reason + "; do a full backup"};
    }
  }
  return {Errc::not_found, "checkpoint '" + name + "' is not in CBT generation " + generation.to_string()};
}

CbtRangesPage CbtView::changed_ranges(uint8_t since, uint64_t offset, uint64_t length,
                                      size_t max_ranges) const {
  CbtRangesPage page;
  page.next_offset = std::min(offset, device_size);
  if (block_size == 0 || offset >= device_size) return page;
  const uint64_t end = offset + std::min(length, device_size - offset);
  page.next_offset = end;
  std::vector<Range>& ranges = page.ranges;
  for (uint64_t block = offset / block_size; block < map.size() && block * block_size < end; ++block) {
    if (map[block] <= since) continue;
    const uint64_t start = std::max(offset, block * block_size);
    const uint64_t stop = std::min(end, (block + 1) * block_size);
    if (!ranges.empty() && ranges.back().offset + ranges.back().length == start) {
      ranges.back().length += stop - start;
      continue;
    }
    if (ranges.size() >= max_ranges) {  // every range so far is whole: the next page starts at this one
      page.more = true;
      page.next_offset = start;
      break;
    }
    ranges.push_back({start, stop - start});
  }
  return page;
}

CbtRunsPage CbtView::number_runs(uint64_t offset, uint64_t length, size_t max_runs) const {
  CbtRunsPage page;
  if (block_size == 0 || offset >= device_size || length == 0) {
    page.offset = page.next_offset = std::min(offset, device_size);
    return page;
  }
  const uint64_t first = offset / block_size;
  const uint64_t end = offset + std::min(length, device_size - offset);
  const uint64_t last = std::min<uint64_t>(map.size(), (end + block_size - 1) / block_size);
  uint64_t block = first;
  while (block < last) {
    if (page.runs.size() >= max_runs) {
      page.more = true;
      break;
    }
    const uint8_t number = map[block];
    uint64_t count = 1;
    while (block + count < last && map[block + count] == number) ++count;
    page.runs.emplace_back(number, count);
    block += count;
  }
  page.offset = first * block_size;
  page.next_offset = std::min(block * block_size, device_size);
  page.length = page.next_offset - page.offset;
  return page;
}

std::vector<Range> CbtFrozen::changed_ranges(uint8_t since, uint64_t offset, uint64_t length) const {
  return view().changed_ranges(since, offset, length, std::numeric_limits<size_t>::max()).ranges;
}

// ---------------------------------------------------------------- the live CBT

Cbt::Cbt(uint64_t device_size, uint64_t block_size, unsigned checkpoints_kept)
    : device_size_(device_size),
      block_size_(block_size),
      checkpoints_kept_(checkpoints_kept),
      map_(unit_count(device_size, block_size), 0) {
  MutexLock lock(mutex_);
  start_generation();
}

// cppcheck-suppress passedByValue ; the state is moved from
Cbt::Cbt(CbtState state, unsigned checkpoints_kept)
    : device_size_(state.device_size),
      block_size_(state.block_size),
      checkpoints_kept_(checkpoints_kept),
      generation_(state.generation),
      number_(state.number),
      map_(std::move(state.map)),
      checkpoints_(std::move(state.checkpoints)),
      dropped_(std::move(state.dropped)) {
  MutexLock lock(mutex_);
  // The limit may have been lowered since the save: the engine says which were dropped.
  dropped_at_resume_ = drop_oldest(checkpoints_, dropped_, checkpoints_kept_);
}

Cbt::Cbt(uint64_t device_size, uint64_t block_size, unsigned checkpoints_kept, const CbtState& ended,
         const std::string& why)
    : Cbt(device_size, block_size, checkpoints_kept) {
  MutexLock lock(mutex_);
  dropped_ = ended.dropped;
  // Oldest first, as drops are remembered: the newest names survive kDroppedCheckpointsRemembered.
  std::vector<std::pair<uint8_t, std::string>> names;
  names.reserve(ended.checkpoints.size());
  for (const auto& [name, checkpoint] : ended.checkpoints) names.emplace_back(checkpoint.number, name);
  std::sort(names.begin(), names.end());
  const std::string reason =
      "CBT history was lost (generation " + ended.generation.to_string() + " ended: " + why + ")";
  for (const auto& [number, name] : names) remember_dropped(dropped_, {name, reason});
}

void Cbt::start_generation() {
  const std::string reason = "CBT history was lost (generation " + generation_.to_string() + " ended)";
  for (const auto& [name, checkpoint] : checkpoints_) remember_dropped(dropped_, {name, reason});
  generation_ = Uuid::random();
  number_ = 1;
  std::fill(map_.begin(), map_.end(), 0);
  checkpoints_.clear();
}

void Cbt::compact() {
  // renumber[v] = 0 for v == 0, else 1 + (kept checkpoints with a number below v): see the design notes.
  std::array<bool, 256> closes_checkpoint{};
  for (const auto& [name, checkpoint] : checkpoints_) closes_checkpoint[checkpoint.number] = true;
  std::array<uint8_t, 256> renumber{};
  unsigned below = 0;
  for (unsigned v = 1; v < renumber.size(); ++v) {
    renumber[v] = static_cast<uint8_t>(below + 1);
    if (closes_checkpoint[v]) ++below;
  }
  for (uint8_t& number : map_) number = renumber[number];
  for (auto& [name, checkpoint] : checkpoints_) checkpoint.number = renumber[checkpoint.number];
  number_ = static_cast<uint8_t>(below + 1);
}

Uuid Cbt::generation() const {
  MutexLock lock(mutex_);
  return generation_;
}

uint8_t Cbt::current_number() const {
  MutexLock lock(mutex_);
  return number_;
}

uint64_t Cbt::mark_dirty(uint64_t offset, uint64_t length) {
  if (length == 0 || offset >= device_size_) return 0;
  const uint64_t last_byte = std::min(device_size_ - 1, offset + length - 1);
  const uint64_t first = offset / block_size_, last = last_byte / block_size_;
  MutexLock lock(mutex_);
  std::fill(map_.begin() + static_cast<ptrdiff_t>(first), map_.begin() + static_cast<ptrdiff_t>(last + 1),
            number_);
  return last - first + 1;
}

Cbt::PreparedFreeze Cbt::prepare_freeze(const std::string& checkpoint, int64_t taken_unix_ms) const {
  MutexLock lock(mutex_);
  PreparedFreeze prepared{nullptr, checkpoints_, dropped_};
  prepared.checkpoints[checkpoint] = {number_, taken_unix_ms};
  std::erase_if(prepared.dropped, [&](const DroppedCheckpoint& d) { return d.name == checkpoint; });
  drop_oldest(prepared.checkpoints, prepared.dropped, checkpoints_kept_);
  prepared.frozen = std::make_shared<CbtFrozen>(CbtFrozen{generation_, number_, block_size_, device_size_,
                                                          map_, prepared.checkpoints, prepared.dropped});
  return prepared;
}

void Cbt::commit_freeze(PreparedFreeze&& prepared) noexcept {
  MutexLock lock(mutex_);
  checkpoints_.swap(prepared.checkpoints);
  dropped_.swap(prepared.dropped);
  if (number_ == 255) {
    compact();  // the next write could not be told apart from this take's: renumber, keep the history
  } else {
    ++number_;
  }
}

std::shared_ptr<const CbtFrozen> Cbt::freeze(const std::string& checkpoint, int64_t taken_unix_ms) {
  PreparedFreeze prepared = prepare_freeze(checkpoint, taken_unix_ms);
  std::shared_ptr<const CbtFrozen> frozen = prepared.frozen;
  commit_freeze(std::move(prepared));
  return frozen;
}

void Cbt::reset() {
  MutexLock lock(mutex_);
  start_generation();
}

Status Cbt::delete_checkpoint(const std::string& name) {
  MutexLock lock(mutex_);
  auto it = checkpoints_.find(name);
  if (it == checkpoints_.end()) {
    Checkpoint unused;
    return CbtView{generation_, number_, block_size_, device_size_, map_, checkpoints_, dropped_}
        .find_checkpoint(name, unused);
  }
  std::vector<DroppedCheckpoint> dropped = dropped_;  // may throw: before anything changes
  remember_dropped(dropped, {name, "it was deleted"});
  dropped_.swap(dropped);
  checkpoints_.erase(it);
  return Status::ok();
}

std::shared_ptr<const CbtFrozen> Cbt::snapshot_of_live_map() const {
  MutexLock lock(mutex_);
  return std::make_shared<CbtFrozen>(
      CbtFrozen{generation_, number_, block_size_, device_size_, map_, checkpoints_, dropped_});
}

Checkpoints Cbt::checkpoints() const {
  MutexLock lock(mutex_);
  return checkpoints_;
}

Status Cbt::checkpoint_number(const std::string& name, uint8_t& number) const {
  return visit_live([&](const CbtView& view) {
    Checkpoint checkpoint;
    Status s = view.find_checkpoint(name, checkpoint);
    if (s) number = checkpoint.number;
    return s;
  });
}

CbtState Cbt::state() const {
  MutexLock lock(mutex_);
  return {generation_, number_, block_size_, device_size_, map_, checkpoints_, dropped_, {}};
}

uint64_t Cbt::memory_bytes() const {
  MutexLock lock(mutex_);
  return map_.size();
}

}  // namespace nbdsnap
