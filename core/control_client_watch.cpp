// SPDX-License-Identifier: BSD-3-Clause
// control_client_watch.cpp — the per-thread stack of client watches (control_client_watch.h).
#include "control_client_watch.h"

namespace nbdsnap {

namespace {
thread_local ControlClientWatch* innermost_watch = nullptr;
}  // namespace

ControlClientWatch::ControlClientWatch(std::function<bool()> gone)
    : gone_(std::move(gone)), outer_(innermost_watch) {
  innermost_watch = this;
}

ControlClientWatch::~ControlClientWatch() {
  innermost_watch = outer_;
}

bool ControlClientWatch::client_gone() {
  return innermost_watch != nullptr && innermost_watch->gone_ && innermost_watch->gone_();
}

}  // namespace nbdsnap
