// io_gate.h — the one facility for draining in-flight I/O (after seastar's gate).
//
// I/O enters and leaves the gate. freeze() makes new entries wait and returns once nothing is inside (a take
// or a detach switching an origin); thaw() lets them go on. close() refuses new entries for good and waits
// for those inside (destroying a snapshot that clients still read).
#pragma once

#include <condition_variable>
#include <mutex>

namespace nbdsnap {

class IoGate {
 public:
  // Returns false when the gate is closed. Waits while it is frozen.
  bool enter();
  void leave();
  void freeze();
  void thaw();
  void close();
  bool is_closed() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  unsigned inside_ = 0;   // GUARDED_BY(mutex_)
  unsigned freezes_ = 0;  // GUARDED_BY(mutex_): nested freezes allowed
  bool closed_ = false;   // GUARDED_BY(mutex_)
};

// Holds a gate entered for one scope.
class GatePass {
 public:
  explicit GatePass(IoGate& gate) : gate_(gate), entered_(gate.enter()) {}
  ~GatePass() {
    if (entered_) gate_.leave();
  }
  GatePass(const GatePass&) = delete;
  GatePass& operator=(const GatePass&) = delete;
  bool entered() const { return entered_; }

 private:
  IoGate& gate_;
  const bool entered_;
};

}  // namespace nbdsnap
