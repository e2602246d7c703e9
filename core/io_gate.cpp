// SPDX-License-Identifier: BSD-3-Clause
// io_gate.cpp — a lock-free count for the open gate, a mutex and condition variable once it is blocked.
#include "io_gate.h"

namespace nbdsnap {

bool IoGate::enter() {
  uint64_t state = state_.load(std::memory_order_acquire);
  while ((state & kBlocked) == 0) {
    if (state_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel)) return true;
  }
  return enter_slow(true);
}

bool IoGate::try_enter() {
  uint64_t state = state_.load(std::memory_order_acquire);
  while ((state & kBlocked) == 0) {
    if (state_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel)) return true;
  }
  return enter_slow(false);
}

bool IoGate::enter_slow(bool may_wait) {
  MutexLock lock(mutex_);
  while (freezes_ > 0 && !closed_) {
    if (!may_wait) return false;
    changed_.wait(mutex_);
  }
  if (closed_) return false;
  state_.fetch_add(1, std::memory_order_acq_rel);  // thawed: no freezer waits for this count meanwhile
  return true;
}

void IoGate::leave() {
  const uint64_t before = state_.fetch_sub(1, std::memory_order_acq_rel);
  if ((before & kBlocked) != 0 && (before & kInsideMask) == 1) {
    MutexLock lock(mutex_);  // the freezer checks the count under the mutex: this wake-up cannot be lost
    changed_.notify_all();
  }
}

void IoGate::freeze() {
  hold();
  wait_until_empty();
}

void IoGate::hold() {
  MutexLock lock(mutex_);
  ++freezes_;
  state_.fetch_or(kBlocked, std::memory_order_acq_rel);
}

void IoGate::wait_until_empty() {
  MutexLock lock(mutex_);
  while (inside() != 0) changed_.wait(mutex_);
}

bool IoGate::wait_until_empty_for(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  MutexLock lock(mutex_);
  while (inside() != 0) {
    if (!changed_.wait_until(mutex_, deadline)) return inside() == 0;
  }
  return true;
}

void IoGate::thaw() {
  MutexLock lock(mutex_);
  if (freezes_ == 0 || --freezes_ > 0) return;
  if (!closed_) state_.fetch_and(kInsideMask, std::memory_order_acq_rel);
  changed_.notify_all();
}

void IoGate::close() {
  MutexLock lock(mutex_);
  closed_ = true;
  closed_flag_.store(true, std::memory_order_release);
  state_.fetch_or(kBlocked, std::memory_order_acq_rel);
  changed_.notify_all();  // entries waiting at a frozen gate give up
  while (inside() != 0) changed_.wait(mutex_);
}

bool IoGate::is_frozen() const {
  MutexLock lock(mutex_);
  return freezes_ > 0;
}

}  // namespace nbdsnap
