// io_gate.cpp — counting entries under a mutex; waiters sleep on one condition variable.
#include "io_gate.h"

namespace nbdsnap {

bool IoGate::enter() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return freezes_ == 0 || closed_; });
  if (closed_) return false;
  ++inside_;
  return true;
}

void IoGate::leave() {
  std::scoped_lock lock(mutex_);
  if (--inside_ == 0) changed_.notify_all();
}

void IoGate::freeze() {
  std::unique_lock lock(mutex_);
  ++freezes_;
  changed_.wait(lock, [&] { return inside_ == 0; });
}

void IoGate::thaw() {
  std::scoped_lock lock(mutex_);
  if (freezes_ > 0 && --freezes_ == 0) changed_.notify_all();
}

void IoGate::close() {
  std::unique_lock lock(mutex_);
  closed_ = true;
  changed_.notify_all();
  changed_.wait(lock, [&] { return inside_ == 0; });
}

bool IoGate::is_closed() const {
  std::scoped_lock lock(mutex_);
  return closed_;
}

}  // namespace nbdsnap
