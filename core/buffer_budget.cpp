// SPDX-License-Identifier: BSD-3-Clause
// buffer_budget.cpp — a compare-and-swap reservation so concurrent writers never overshoot the limit.
#include "buffer_budget.h"

namespace nbdsnap {

bool BufferBudget::try_reserve(uint64_t bytes) {
  uint64_t used = used_.load();
  do {
    if (used + bytes > limit_) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes));
  return true;
}

}  // namespace nbdsnap
