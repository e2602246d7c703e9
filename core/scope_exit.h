// SPDX-License-Identifier: BSD-3-Clause
// scope_exit.h — runs a function when a scope ends, however it ends (a return, an error status, or an
// exception such as std::bad_alloc from any allocation on the way), unless dismissed: for giving back what a
// call took half-way (a descriptor's file, a registry entry). Without it, each early return must remember
// the give-back, and an exception skips them all.
//
// The function must not throw: it runs from a destructor, also while an exception unwinds the stack.
// Thread-safety: none of its own; a ScopeExit belongs to the scope that declares it.
#pragma once

#include <utility>

namespace nbdsnap {

enum class ScopeExitArmed { now, later };

template <typename Run>
class ScopeExit {
 public:
  // With ScopeExitArmed::later nothing runs until arm(): for a give-back that is owed only once the thing is
  // taken (arm just before taking it).
  explicit ScopeExit(Run run, ScopeExitArmed armed = ScopeExitArmed::now)
      : run_(std::move(run)), armed_(armed == ScopeExitArmed::now) {}
  ~ScopeExit() { run_now(); }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;

  void arm() { armed_ = true; }
  // Nothing runs: the caller gave back (or kept) the thing itself.
  void dismiss() { armed_ = false; }
  // Runs it now (once) rather than at the end of the scope.
  void run_now() {
    if (armed_) {
      armed_ = false;
      run_();
    }
  }

 private:
  Run run_;
  bool armed_;
};

}  // namespace nbdsnap
