// SPDX-License-Identifier: BSD-3-Clause
// worker_pool.cpp — nbdsnapd's growing worker pool with a cap per lane (see worker_pool.h).
//
// Accounting: idle_ counts threads that will take a runnable task without finishing another first (those
// waiting, and those started but not yet waiting). post() starts a thread whenever runnable tasks outnumber
// them, so no runnable task waits behind a busy worker while fewer than max_threads exist. A thread that
// ends on its own (idle too long) moves its std::thread to retired_, to be joined by the next post() or by
// join(): a thread cannot join itself.
#include "worker_pool.h"

#include <pthread.h>

#include <exception>

#include "log.h"

namespace nbdsnap {

WorkerPool::WorkerPool(WorkerPoolLimits limits) : limits_(limits) {
  MutexLock lock(mutex_);
  for (unsigned i = 0; i < limits_.min_threads; ++i) start_thread();
}

WorkerPool::~WorkerPool() {
  join();
}

void WorkerPool::start_thread() {
  ++threads_;
  ++idle_;
  std::thread thread([this] { work(); });
  const std::thread::id id = thread.get_id();
  alive_.emplace(id, std::move(thread));  // before the thread can take the lock and look for itself
}

void WorkerPool::post(std::string_view lane_name, Task task) {
  {
    MutexLock lock(mutex_);
    auto [it, added] = lanes_.try_emplace(std::string(lane_name));
    Lane& lane = it->second;
    if (lane.admitted >= limits_.lane_limit) {
      lane.waiting.push_back(std::move(task));
      ++waiting_;
      return;
    }
    ++lane.admitted;
    runnable_.push_back({std::move(task), it->first});
    if (runnable_.size() > idle_ && threads_ < limits_.max_threads) start_thread();
    wake_.notify_one();
  }
  for (std::thread& thread : take_retired()) thread.join();
}

std::vector<std::thread> WorkerPool::take_retired() {
  MutexLock lock(mutex_);
  return std::move(retired_);
}

void WorkerPool::finish(const std::string& lane_name) {
  const auto it = lanes_.find(lane_name);
  Lane& lane = it->second;
  if (!lane.waiting.empty()) {
    // Its turn: the lane keeps its count, and this (now idle) thread runs it next. No other worker is woken:
    // it would find nothing to run (a wasted wake-up per task of a busy lane).
    runnable_.push_back({std::move(lane.waiting.front()), lane_name});
    lane.waiting.pop_front();
    --waiting_;
    return;
  }
  if (--lane.admitted == 0) lanes_.erase(it);
}

void WorkerPool::work() {
  ::pthread_setname_np(::pthread_self(), "nbdsnapd-work");  // what top -H and /proc/PID/task/*/comm show
  MutexLock lock(mutex_);
  for (;;) {
    while (runnable_.empty() && !stopping_) {
      if (threads_ <= limits_.min_threads) {
        wake_.wait(mutex_);
        continue;
      }
      const auto deadline = std::chrono::steady_clock::now() + limits_.idle_timeout;
      const bool woken = wake_.wait_until(mutex_, deadline);
      if (!woken && runnable_.empty() && !stopping_ && threads_ > limits_.min_threads) {
        --threads_;
        --idle_;
        const auto self = alive_.find(std::this_thread::get_id());
        retired_.push_back(std::move(self->second));
        alive_.erase(self);
        return;
      }
    }
    if (runnable_.empty()) {  // stopping, nothing left to run: join() joins it
      --threads_;
      --idle_;
      return;
    }
    Runnable next = std::move(runnable_.front());
    runnable_.pop_front();
    --idle_;
    lock.unlock();
    try {
      next.task();
    } catch (const std::exception& e) {
      log_error(std::string("worker: a task failed: ") + e.what());
    } catch (...) {
      log_error("worker: a task failed");
    }
    next.task = Task();  // what it holds goes before the lock is taken
    lock.lock();
    ++idle_;
    finish(next.lane);
  }
}

// A stopping thread ends once nothing is runnable. A lane's waiting task has an earlier task of its lane
// running, whose thread makes it runnable when done and then runs it itself: every task posted before join()
// (or by a task meanwhile) runs.
void WorkerPool::join() {
  for (;;) {
    std::unordered_map<std::thread::id, std::thread> alive;
    {
      MutexLock lock(mutex_);
      stopping_ = true;
      wake_.notify_all();
      alive.swap(alive_);
    }
    std::vector<std::thread> retired = take_retired();
    if (alive.empty() && retired.empty()) return;
    for (auto& [id, thread] : alive) thread.join();
    for (std::thread& thread : retired) thread.join();
  }
}

unsigned WorkerPool::threads() const {
  MutexLock lock(mutex_);
  return threads_;
}

unsigned WorkerPool::running() const {
  MutexLock lock(mutex_);
  return threads_ - idle_;
}

unsigned WorkerPool::waiting() const {
  MutexLock lock(mutex_);
  return unsigned(runnable_.size()) + waiting_;
}

}  // namespace nbdsnap
