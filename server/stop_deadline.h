// SPDX-License-Identifier: BSD-3-Clause
// stop_deadline.h — a bound on the first part of nbdsnapd's stop. Once SIGTERM starts it, the connections
// must be drained (Server::run returns) within a deadline; each later step has a bound of its own (main.cpp).
// An engine call stuck on a disk that stopped answering (a copy-on-write store to difference storage on a
// stalled FUSE or NFS file system) keeps its connection, and so the stop, waiting as long as that disk
// stalls, with no CBT state saved meanwhile: a supervisor's SIGKILL then cost every origin a new CBT
// generation and a full backup (attack15 F1). Past the deadline a thread of this object saves the CBT state
// itself and ends the process with _Exit, leaving the call behind; its thread stays in the kernel until the
// disk answers, and no code of ours runs after the save. CBT stays correct: a write marks its blocks before
// it reaches any disk, so the saved map holds every write that may land later.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

#include "mutex.h"

namespace nbdsnap {

class StopDeadline {
 public:
  // save: saves the CBT state (without waiting on the origins' disks), true when all of it was saved; runs on
  // this object's thread and must be safe beside whatever the stop sequence still does. warn: logs a line.
  StopDeadline(std::chrono::milliseconds limit, std::function<bool()> save,
               std::function<void(const std::string&)> warn);
  // Ends the watch when the stop was disarmed in time (or never began).
  ~StopDeadline();
  StopDeadline(const StopDeadline&) = delete;
  StopDeadline& operator=(const StopDeadline&) = delete;

  // The stop began: the clock starts. Thread-safe; later calls do nothing.
  void arm() EXCLUDES(mutex_);
  // The connections are drained. True: the deadline will not fire any more. False: it has fired, and its
  // thread saves and ends the process; the caller must not go on (it waits for the exit).
  bool disarm() EXCLUDES(mutex_);

 private:
  void watch() EXCLUDES(mutex_);

  const std::chrono::milliseconds limit_;
  const std::function<bool()> save_;
  const std::function<void(const std::string&)> warn_;
  Mutex mutex_;
  CondVar changed_;
  bool armed_ GUARDED_BY(mutex_) = false;
  bool decided_ GUARDED_BY(mutex_) = false;  // disarmed, or fired
  bool ending_ GUARDED_BY(mutex_) = false;   // the destructor runs
  std::thread thread_;
};

}  // namespace nbdsnap
