// SPDX-License-Identifier: BSD-3-Clause
// worker_pool.h — the threads that run nbdsnapd's engine calls: a pool that grows while every worker is busy,
// and shrinks back when idle, with a cap per export, so that one stalled disk never takes every worker.
//
// Design notes. A request to a disk that stopped (a frozen file system, an NFS server gone, a dying disk)
// holds its worker in the kernel until the disk answers: a fixed pool of N workers is taken by N such
// requests, and then every other export's requests wait too. So, as QEMU's util/thread-pool.c does, a task
// posted while no worker is free starts one more thread (up to max_threads); threads above min_threads end
// after idle_timeout without a task. And, unlike QEMU, tasks carry a lane (nbdsnapd: the export, an origin
// or one of its images): at most lane_limit tasks of one lane run at once, the rest wait in their
// lane's queue, holding no thread. With lane_limit < max_threads, a lane whose tasks all hang leaves
// max_threads - lane_limit workers to the other lanes: a stalled disk holds up only its own exports, as long
// as fewer than max_threads / lane_limit lanes hang at once. Tasks of one lane start in the order posted.
//
// Thread-safe. Tasks must not throw (an exception is logged and dropped).
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "mutex.h"

namespace nbdsnap {

struct WorkerPoolLimits {
  unsigned min_threads = 4;                        // started at once and kept
  unsigned max_threads = 64;                       // never more (> lane_limit: room for other lanes)
  unsigned lane_limit = 4;                         // tasks of one lane running at once
  std::chrono::milliseconds idle_timeout{10'000};  // threads above min_threads end after this without a task
};

class WorkerPool {
 public:
  // A move-only callable (a lambda may own buffers and connections).
  class Task {
   public:
    Task() = default;
    template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Task>>>
    Task(F&& f) : body_(std::make_unique<Body<std::decay_t<F>>>(std::forward<F>(f))) {}  // NOLINT: implicit
    void operator()() { body_->run(); }
    explicit operator bool() const { return body_ != nullptr; }

   private:
    struct Base {
      virtual ~Base() = default;
      virtual void run() = 0;
    };
    template <typename F>
    struct Body final : Base {
      explicit Body(F&& f) : f(std::move(f)) {}
      explicit Body(const F& f) : f(f) {}
      void run() override { f(); }
      F f;
    };
    std::unique_ptr<Base> body_;
  };

  // REQUIRES: 1 <= min_threads <= max_threads, 1 <= lane_limit.
  explicit WorkerPool(WorkerPoolLimits limits);
  // join().
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs `task` on a worker: at once if its lane runs fewer than lane_limit tasks (starting a thread if none
  // is free and fewer than max_threads run), else after the lane's earlier tasks. Any thread, also a worker.
  void post(std::string_view lane, Task task) EXCLUDES(mutex_);
  // Waits until every task posted has run (those tasks post meanwhile too), then ends the threads.
  void join() EXCLUDES(mutex_);

  // For tests and logs.
  unsigned threads() const EXCLUDES(mutex_);  // alive
  unsigned running() const EXCLUDES(mutex_);  // tasks running now
  unsigned waiting() const EXCLUDES(mutex_);  // tasks posted and not started (a lane's queue included)

 private:
  struct Runnable {
    Task task;
    std::string lane;
  };
  struct Lane {
    unsigned admitted = 0;     // tasks of the lane running or in runnable_
    std::deque<Task> waiting;  // over lane_limit, in order
  };
  void start_thread() REQUIRES(mutex_);
  void work() EXCLUDES(mutex_);
  // A task of `lane` ended: its next waiting task becomes runnable, or the lane has one task fewer.
  void finish(const std::string& lane) REQUIRES(mutex_);
  // Threads that ended on their own, joined outside the lock.
  std::vector<std::thread> take_retired() EXCLUDES(mutex_);

  const WorkerPoolLimits limits_;
  mutable Mutex mutex_;  // a leaf lock (connection.h lists nbdsnapd's locks)
  CondVar wake_;         // workers wait for runnable_ or stopping_
  std::deque<Runnable> runnable_ GUARDED_BY(mutex_);
  std::unordered_map<std::string, Lane> lanes_ GUARDED_BY(mutex_);  // lanes with admitted tasks only
  std::unordered_map<std::thread::id, std::thread> alive_ GUARDED_BY(mutex_);
  std::vector<std::thread> retired_ GUARDED_BY(mutex_);
  unsigned threads_ GUARDED_BY(mutex_) = 0;  // alive_.size(), kept as a number for the checks
  unsigned idle_ GUARDED_BY(mutex_) = 0;     // threads not running a task (waiting, or started and not yet)
  unsigned waiting_ GUARDED_BY(mutex_) = 0;  // tasks in lanes' queues
  bool stopping_ GUARDED_BY(mutex_) = false;
};

}  // namespace nbdsnap
