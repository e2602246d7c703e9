// SPDX-License-Identifier: BSD-3-Clause
// reloader.cpp — SIGHUP's reload on its own thread (see reloader.h).
#include "reloader.h"

#include <exception>
#include <string>

#include "log.h"
#include "systemd_service.h"

namespace nbdsnap {

Reloader::Reloader(std::function<void()> reload) : state_(std::make_shared<State>()) {
  state_->reload = std::move(reload);
}

Reloader::~Reloader() {
  if (stop() || !thread_.joinable()) return;
  log_warning("a reload (SIGHUP) still waits to read its files; left running");
  thread_.detach();
}

bool Reloader::stop() {
  bool stuck = false;
  {
    MutexLock lock(state_->mutex);
    const auto deadline = std::chrono::steady_clock::now() + kStopWait;
    while (state_->running && state_->idle.wait_until(state_->mutex, deadline)) {
    }
    stuck = state_->running;
  }
  if (stuck) return false;
  if (thread_.joinable()) thread_.join();
  return true;
}

void Reloader::request() {
  {
    MutexLock lock(state_->mutex);
    if (state_->running) {
      state_->again = true;
      return;
    }
    state_->running = true;
  }
  if (thread_.joinable()) thread_.join();  // its reload has ended: `running` was false
  thread_ = std::thread([state = state_] { run(state); });
}

void Reloader::run(const std::shared_ptr<State>& state) {
  for (;;) {
    notify_service_manager("RELOADING=1");
    try {
      state->reload();
    } catch (const std::exception& e) {
      log_error(std::string("reload failed: ") + e.what());
    }
    notify_service_manager("READY=1");
    MutexLock lock(state->mutex);
    if (!state->again) {
      state->running = false;
      state->idle.notify_all();
      return;
    }
    state->again = false;
  }
}

}  // namespace nbdsnap
