// SPDX-License-Identifier: BSD-3-Clause
// events.h — the engine's waitable event log: created, taken, low free space, corruption, storage appended,
// destroyed, origins attached and detached, CBT generations renewed.
//
// Events are numbered; a waiter asks for everything after the number it last saw, so several agents can
// follow the same log independently. The log keeps the most recent events only (bounded memory).
//
// Thread-safety: every method may be called from any thread at any time.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "mutex.h"

namespace nbdsnap {

enum class EventType {
  low_free_space,
  corrupted,
  storage_appended,
  snapshot_taken,
  snapshot_destroyed,
  origin_attached,
  origin_detached,
  generation_renewed,
  snapshot_created
};
const char* event_type_name(EventType type);

struct Event {
  uint64_t sequence = 0;
  int64_t time_unix_ms = 0;
  EventType type = EventType::low_free_space;
  std::string snapshot;
  std::string origin;
  std::string reason;
  uint64_t requested_bytes = 0;  // low_free_space: how much more storage would relieve it
  uint64_t bytes = 0;            // storage_appended: bytes added
  int error_code = 0;            // corrupted: the errno of the failure (blksnap's err_code); 0 otherwise
};

class EventLog {
 public:
  explicit EventLog(size_t capacity = 4096) : capacity_(capacity) {}
  // Records an event (its sequence and time are filled in) and wakes waiters. Returns its sequence.
  uint64_t post(Event event);
  // Events with sequence > after; waits up to timeout for at least one. Empty on timeout. Returns at once,
  // with what it has, once stop() has been called. give_up (if set) is asked about once a second, without
  // the lock: true ends the wait at once with what there is (a control client that hung up).
  std::vector<Event> wait_after(uint64_t after, std::chrono::milliseconds timeout,
                                const std::function<bool()>& give_up = {});
  // Sequence of the newest event (0 when none).
  uint64_t last_sequence() const;
  // Wakes the waiters of this moment; they return what they have. A wait that starts afterwards waits as
  // usual, so this cannot end a shutdown: a waiter that arrives a moment later holds it up (use stop()).
  void interrupt();
  // Permanent: wakes every waiter, and every later wait_after() returns at once. For shutdown, where a
  // control client's events-wait (up to 24 h) must not hold up saving state and exiting however late it
  // arrives. Events can still be posted, and read without waiting.
  void stop();

 private:
  mutable Mutex mutex_;  // a leaf lock (core/lock_order.h)
  CondVar changed_;
  std::deque<Event> events_ GUARDED_BY(mutex_);
  uint64_t next_sequence_ GUARDED_BY(mutex_) = 1;
  uint64_t interrupts_ GUARDED_BY(mutex_) = 0;
  bool stopped_ GUARDED_BY(mutex_) = false;
  const size_t capacity_;
};

}  // namespace nbdsnap
