// cbt.cpp — change numbers per tracking block, freezing at take, generations.
#include "cbt.h"

#include <algorithm>

#include "sizing.h"

namespace nbdsnap {

std::vector<Range> CbtFrozen::changed_ranges(uint8_t since, uint64_t offset, uint64_t length) const {
  std::vector<Range> ranges;
  if (block_size == 0 || offset >= device_size) return ranges;
  const uint64_t end = std::min(device_size, offset + std::min(length, device_size - offset));
  for (uint64_t block = offset / block_size; block < map.size() && block * block_size < end; ++block) {
    if (map[block] <= since) continue;
    const uint64_t start = std::max(offset, block * block_size);
    const uint64_t stop = std::min(end, (block + 1) * block_size);
    if (!ranges.empty() && ranges.back().offset + ranges.back().length == start) {
      ranges.back().length += stop - start;
    } else {
      ranges.push_back({start, stop - start});
    }
  }
  return ranges;
}

Cbt::Cbt(uint64_t device_size, uint64_t block_size)
    : device_size_(device_size), block_size_(block_size), map_(unit_count(device_size, block_size), 0) {
  MutexLock lock(mutex_);
  start_generation();
}

// cppcheck-suppress passedByValue ; the state is moved from
Cbt::Cbt(CbtState state)
    : device_size_(state.device_size),
      block_size_(state.block_size),
      generation_(state.generation),
      number_(state.number),
      map_(std::move(state.map)),
      checkpoints_(std::move(state.checkpoints)) {}

void Cbt::start_generation() {
  generation_ = Uuid::random();
  number_ = 1;
  std::fill(map_.begin(), map_.end(), 0);
  checkpoints_.clear();
}

Uuid Cbt::generation() const {
  MutexLock lock(mutex_);
  return generation_;
}

uint8_t Cbt::current_number() const {
  MutexLock lock(mutex_);
  return number_;
}

void Cbt::mark_dirty(uint64_t offset, uint64_t length) {
  if (length == 0 || offset >= device_size_) return;
  const uint64_t last_byte = std::min(device_size_ - 1, offset + length - 1);
  const uint64_t first = offset / block_size_, last = last_byte / block_size_;
  MutexLock lock(mutex_);
  std::fill(map_.begin() + static_cast<ptrdiff_t>(first), map_.begin() + static_cast<ptrdiff_t>(last + 1), number_);
}

std::shared_ptr<const CbtFrozen> Cbt::freeze(const std::string& checkpoint) {
  MutexLock lock(mutex_);
  auto checkpoints = checkpoints_;  // everything that may throw happens before the state changes
  checkpoints[checkpoint] = number_;
  auto frozen = std::make_shared<CbtFrozen>(
      CbtFrozen{generation_, number_, block_size_, device_size_, map_, checkpoints});
  checkpoints_.swap(checkpoints);
  if (number_ == 255) {
    start_generation();  // the next write could not be told apart: history restarts
  } else {
    ++number_;
  }
  return frozen;
}

void Cbt::reset() {
  MutexLock lock(mutex_);
  start_generation();
}

std::shared_ptr<const CbtFrozen> Cbt::snapshot_of_live_map() const {
  MutexLock lock(mutex_);
  return std::make_shared<CbtFrozen>(CbtFrozen{generation_, number_, block_size_, device_size_, map_, checkpoints_});
}

std::map<std::string, uint8_t> Cbt::checkpoints() const {
  MutexLock lock(mutex_);
  return checkpoints_;
}

Status Cbt::checkpoint_number(const std::string& name, uint8_t& number) const {
  MutexLock lock(mutex_);
  auto it = checkpoints_.find(name);
  if (it == checkpoints_.end()) {
    return {Errc::not_found, "checkpoint '" + name + "' is not in CBT generation " + generation_.to_string()};
  }
  number = it->second;
  return Status::ok();
}

CbtState Cbt::state() const {
  MutexLock lock(mutex_);
  return {generation_, number_, block_size_, device_size_, map_, checkpoints_, {}};
}

uint64_t Cbt::memory_bytes() const {
  MutexLock lock(mutex_);
  return map_.size();
}

}  // namespace nbdsnap
