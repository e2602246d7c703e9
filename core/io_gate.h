// SPDX-License-Identifier: BSD-3-Clause
// io_gate.h — the one facility for draining in-flight I/O (after seastar's gate).
//
// I/O enters and leaves the gate. freeze() makes new entries wait and returns once nothing is inside (a take
// or a destroy switching an origin's copy-on-write target); thaw() lets them go on. close() refuses new
// entries for good and waits for those inside (detaching an origin, destroying a snapshot that clients still
// read). Callers hold a gate through the RAII types Pass and Freeze, so an exception or an early return can
// never leave it entered or frozen.
//
// Design notes. Entering and leaving an open gate costs one atomic read-modify-write, no lock: every origin
// write passes here. state_ holds the number of entries inside and a `blocked` bit that freeze() and close()
// set under the mutex; an entry that sees the bit takes the mutex and waits (or gives up). The last entry to
// leave a blocked gate takes the mutex to wake the freezer; since the freezer checks the count under the
// mutex after setting the bit, the wake-up cannot be lost.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <utility>

#include "mutex.h"

namespace nbdsnap {

class IoGate {
 public:
  class Pass;
  class Freeze;

  IoGate() = default;
  IoGate(const IoGate&) = delete;
  IoGate& operator=(const IoGate&) = delete;

  // Enters the gate: waits while it is frozen; false (not entered) once it is closed.
  bool enter() EXCLUDES(mutex_);
  // Enters only if that needs no wait: false while the gate is frozen or closed.
  bool try_enter() EXCLUDES(mutex_);
  void leave() EXCLUDES(mutex_);
  // Holds new entries and waits until nothing is inside. Freezes nest. REQUIRES: the caller is not inside.
  void freeze() EXCLUDES(mutex_);
  // The two halves of freeze(): hold() holds new entries and never waits (it counts as a freeze: thaw() ends
  // it); wait_until_empty() then waits until nothing is inside. A take holds every origin's gate before it
  // waits for any, so the drains of many busy origins overlap instead of adding up.
  // REQUIRES (wait_until_empty): a hold or freeze of the caller's, who is not inside.
  void hold() EXCLUDES(mutex_);
  void wait_until_empty() EXCLUDES(mutex_);
  // As wait_until_empty(), for at most `limit`: false if entries are still inside then.
  bool wait_until_empty_for(std::chrono::milliseconds limit) EXCLUDES(mutex_);
  void thaw() EXCLUDES(mutex_);
  // Refuses every later entry and waits until nothing is inside. REQUIRES: the caller is not inside.
  void close() EXCLUDES(mutex_);
  bool is_closed() const { return closed_flag_.load(std::memory_order_acquire); }
  bool is_frozen() const EXCLUDES(mutex_);

 private:
  static constexpr uint64_t kBlocked = uint64_t{1} << 63;  // frozen or closed: entries take the mutex
  static constexpr uint64_t kInsideMask = kBlocked - 1;
  bool enter_slow(bool may_wait) EXCLUDES(mutex_);
  uint64_t inside() const { return state_.load(std::memory_order_acquire) & kInsideMask; }

  std::atomic<uint64_t> state_{0};  // kBlocked | entries inside
  std::atomic<bool> closed_flag_{false};
  mutable Mutex mutex_;
  CondVar changed_;
  unsigned freezes_ GUARDED_BY(mutex_) = 0;  // nested freezes
  bool closed_ GUARDED_BY(mutex_) = false;
};

// The gate entered for as long as the Pass lives (or until release()). Move-only.
class IoGate::Pass {
 public:
  Pass() = default;
  // Enters, waiting while the gate is frozen; not entered() when it is closed.
  explicit Pass(IoGate& gate) : gate_(gate.enter() ? &gate : nullptr) {}
  // Enters only if that needs no wait (see IoGate::try_enter).
  static Pass try_enter(IoGate& gate) {
    Pass pass;
    if (gate.try_enter()) pass.gate_ = &gate;
    return pass;
  }
  Pass(Pass&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)) {}
  Pass& operator=(Pass&& other) noexcept {
    if (this != &other) {
      release();
      gate_ = std::exchange(other.gate_, nullptr);
    }
    return *this;
  }
  Pass(const Pass&) = delete;
  Pass& operator=(const Pass&) = delete;
  ~Pass() { release(); }

  bool entered() const { return gate_ != nullptr; }
  void release() {
    if (gate_ != nullptr) std::exchange(gate_, nullptr)->leave();
  }

 private:
  IoGate* gate_ = nullptr;
};

// The gate frozen for as long as the Freeze lives. Move-only. Drain::later only holds new entries: the owner
// calls wait_until_empty() before it counts on nothing being inside.
class IoGate::Freeze {
 public:
  enum class Drain { now, later };
  explicit Freeze(IoGate& gate, Drain drain = Drain::now) : gate_(&gate) {
    if (drain == Drain::now) {
      gate.freeze();
    } else {
      gate.hold();
    }
  }
  void wait_until_empty() { gate_->wait_until_empty(); }
  bool wait_until_empty_for(std::chrono::milliseconds limit) { return gate_->wait_until_empty_for(limit); }
  Freeze(Freeze&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)) {}
  Freeze& operator=(Freeze&&) = delete;
  Freeze(const Freeze&) = delete;
  Freeze& operator=(const Freeze&) = delete;
  ~Freeze() {
    if (gate_ != nullptr) gate_->thaw();
  }

 private:
  IoGate* gate_;
};

}  // namespace nbdsnap
