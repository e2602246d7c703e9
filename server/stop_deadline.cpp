// SPDX-License-Identifier: BSD-3-Clause
// stop_deadline.cpp — the watch thread that saves the CBT state and ends nbdsnapd when its stop is stuck
// (see stop_deadline.h).
#include "stop_deadline.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "log.h"

namespace nbdsnap {

StopDeadline::StopDeadline(std::chrono::milliseconds limit, std::function<bool()> save,
                           std::function<void(const std::string&)> warn)
    : limit_(limit), save_(std::move(save)), warn_(std::move(warn)) {}

StopDeadline::~StopDeadline() {
  {
    MutexLock lock(mutex_);
    ending_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StopDeadline::arm() {
  MutexLock lock(mutex_);
  if (armed_) return;
  armed_ = true;
  thread_ = std::thread([this] { watch(); });
}

bool StopDeadline::disarm() {
  MutexLock lock(mutex_);
  if (decided_) return false;
  decided_ = true;
  changed_.notify_all();
  return true;
}

void StopDeadline::watch() {
  const auto deadline = std::chrono::steady_clock::now() + limit_;
  {
    MutexLock lock(mutex_);
    while (!decided_ && !ending_ && std::chrono::steady_clock::now() < deadline)
      changed_.wait_until(mutex_, deadline);
    if (decided_ || ending_) return;
    decided_ = true;  // disarm() now answers false: the stop sequence waits for the exit below
  }
  warn_(
      "a request still ran " + std::to_string(limit_.count() / 1000) +
      " s into the stop (a disk or difference storage it writes may not be answering); saving the CBT state "
      "and exiting without it");
  const bool saved = save_();
  warn_(saved ? "CBT state saved; exiting with a request still stuck" : "exiting with errors");
  log_flush(kExitLogFlush);  // _Exit runs no atexit handler
  std::fflush(nullptr);
  std::_Exit(saved ? 0 : 1);
}

}  // namespace nbdsnap
