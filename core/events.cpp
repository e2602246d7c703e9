// SPDX-License-Identifier: BSD-3-Clause
// events.cpp — a bounded, numbered event log with waiters.
#include "events.h"

#include <algorithm>

namespace nbdsnap {

const char* event_type_name(EventType type) {
  switch (type) {
    case EventType::low_free_space:
      return "low_free_space";
    case EventType::corrupted:
      return "corrupted";
    case EventType::storage_appended:
      return "storage_appended";
    case EventType::snapshot_taken:
      return "snapshot_taken";
    case EventType::snapshot_destroyed:
      return "snapshot_destroyed";
    case EventType::origin_attached:
      return "origin_attached";
    case EventType::origin_detached:
      return "origin_detached";
    case EventType::generation_renewed:
      return "generation_renewed";
    case EventType::snapshot_created:
      return "snapshot_created";
  }
  return "unknown";
}

uint64_t EventLog::post(Event event) {
  MutexLock lock(mutex_);
  event.sequence = next_sequence_++;
  event.time_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  events_.push_back(std::move(event));
  while (events_.size() > capacity_) events_.pop_front();
  changed_.notify_all();
  return next_sequence_ - 1;
}

std::vector<Event> EventLog::wait_after(uint64_t after, std::chrono::milliseconds timeout,
                                        const std::function<bool()>& give_up) {
  constexpr auto kGiveUpInterval = std::chrono::seconds(1);
  MutexLock lock(mutex_);
  const uint64_t interrupts = interrupts_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (next_sequence_ - 1 <= after && interrupts_ == interrupts && !stopped_) {
    const auto until =
        give_up ? std::min(deadline, std::chrono::steady_clock::now() + kGiveUpInterval) : deadline;
    if (changed_.wait_until(mutex_, until)) continue;
    if (until >= deadline) break;
    lock.unlock();  // give_up may make a system call (a poll of the client's socket)
    const bool stop = give_up();
    lock.lock();
    if (stop) break;
  }
  std::vector<Event> found;
  for (const Event& e : events_) {
    if (e.sequence > after) found.push_back(e);
  }
  return found;
}

uint64_t EventLog::last_sequence() const {
  MutexLock lock(mutex_);
  return next_sequence_ - 1;
}

void EventLog::interrupt() {
  MutexLock lock(mutex_);
  ++interrupts_;
  changed_.notify_all();
}

void EventLog::stop() {
  MutexLock lock(mutex_);
  stopped_ = true;
  changed_.notify_all();
}

}  // namespace nbdsnap
