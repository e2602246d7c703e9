// SPDX-License-Identifier: BSD-3-Clause
// buffer_budget.h — bounds the bytes of old chunks held in memory awaiting writeback, engine-wide.
#pragma once

#include <atomic>
#include <cstdint>

namespace nbdsnap {

class BufferBudget {
 public:
  explicit BufferBudget(uint64_t limit) : limit_(limit) {}
  // Reserves bytes if they fit under the limit; the caller writes synchronously otherwise.
  bool try_reserve(uint64_t bytes);
  void release(uint64_t bytes) { used_.fetch_sub(bytes); }
  uint64_t used() const { return used_.load(); }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

}  // namespace nbdsnap
