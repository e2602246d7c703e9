// SPDX-License-Identifier: BSD-3-Clause
// reloader.h — what SIGHUP does (the log level from the configuration, the TLS credentials), on a thread of
// its own. A reload reads files, and their file system may stall as a hung NFS server does: run on the I/O
// thread that accepts clients and handles SIGTERM, one stalled read stopped both (attack13b). A request
// while a reload runs asks for one more after it, so the newest files are the ones read last.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "mutex.h"

namespace nbdsnap {

class Reloader {
 public:
  // reload: runs on the reloader's thread, between RELOADING=1 and READY=1 to systemd; must be thread-safe
  // against everything else the server does, and must not throw (an exception is logged).
  explicit Reloader(std::function<void()> reload);
  // Waits for a reload under way (stop()); one still stuck is left running (logged), which is safe only if
  // the process ends without running more code: callers stop() first and end with _Exit when it fails.
  ~Reloader();
  Reloader(const Reloader&) = delete;
  Reloader& operator=(const Reloader&) = delete;

  // Starts a reload, or asks the one under way for another after it. Called from one thread (the I/O
  // thread's signal handler).
  void request();
  // Waits at most kStopWait for a reload under way; true when none runs any more. False: a reload still
  // waits to read its files, and will go on when they answer, using whatever the process has then; a stopping
  // server must not wait as long as a stalled file system, so it ends with _Exit, running no destructor
  // the reload might still use (main.cpp). The exit itself may still wait for the stalled read (the kernel
  // cannot interrupt a FUSE request its server has taken, nor an NFS hard mount's), but no code of ours runs.
  bool stop();

  static constexpr std::chrono::seconds kStopWait{5};

 private:
  // Shared with the thread, which may outlive this object (see the destructor).
  struct State {
    std::function<void()> reload;
    Mutex mutex;
    CondVar idle;
    bool running GUARDED_BY(mutex) = false;
    bool again GUARDED_BY(mutex) = false;
  };
  static void run(const std::shared_ptr<State>& state);

  std::shared_ptr<State> state_;
  std::thread thread_;  // the latest reload's
};

}  // namespace nbdsnap
