// SPDX-License-Identifier: BSD-3-Clause
// worker_pool_test.cpp — nbdsnapd's worker pool: it grows while every worker hangs, never past its maximum,
// keeps one lane (an export on a stalled disk) from taking every worker, and shrinks back when idle.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "worker_pool.h"

using namespace nbdsnap;
using namespace std::chrono_literals;

namespace {

// Tasks that hang until released, as writes to a frozen file system do.
class Stall {
 public:
  WorkerPool::Task task() {
    return [this] {
      ++entered_;
      MutexLock lock(mutex_);
      while (!released_) released_cond_.wait(mutex_);
    };
  }
  void release() {
    MutexLock lock(mutex_);
    released_ = true;
    released_cond_.notify_all();
  }
  unsigned entered() const { return entered_; }

 private:
  std::atomic<unsigned> entered_{0};
  Mutex mutex_;
  CondVar released_cond_;
  bool released_ GUARDED_BY(mutex_) = false;
};

// Waits (bounded) until `done` holds.
template <typename F>
bool eventually(F done, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST_CASE("the pool starts a worker for a task posted while every worker hangs, up to its maximum") {
  WorkerPool pool({.min_threads = 2, .max_threads = 4, .lane_limit = 8, .idle_timeout = 10s});
  CHECK(pool.threads() == 2);
  Stall stall;
  for (int i = 0; i < 6; ++i) pool.post("f", stall.task());
  REQUIRE(eventually([&] { return stall.entered() == 4; }));
  CHECK(pool.threads() == 4);  // never more than the maximum
  std::this_thread::sleep_for(50ms);
  CHECK(stall.entered() == 4);
  CHECK(pool.waiting() == 2);
  stall.release();
  REQUIRE(eventually([&] { return stall.entered() == 6 && pool.running() == 0; }));
  CHECK(pool.waiting() == 0);
}

TEST_CASE("a lane whose tasks all hang leaves workers to the other lanes") {
  WorkerPool pool({.min_threads = 2, .max_threads = 8, .lane_limit = 2, .idle_timeout = 10s});
  Stall stall;
  for (int i = 0; i < 10; ++i) pool.post("frozen", stall.task());
  REQUIRE(eventually([&] { return stall.entered() == 2; }));
  std::atomic<int> served{0};
  for (int i = 0; i < 20; ++i) pool.post(i % 2 ? "q" : "r", [&] { ++served; });
  CHECK(eventually([&] { return served == 20; }, 2000ms));
  CHECK(stall.entered() == 2);  // the frozen lane never ran more than its limit
  CHECK(pool.threads() <= 8);
  stall.release();
  REQUIRE(eventually([&] { return stall.entered() == 10 && pool.running() == 0; }));
}

TEST_CASE("tasks of one lane over its limit start in the order they were posted") {
  WorkerPool pool({.min_threads = 1, .max_threads = 4, .lane_limit = 1, .idle_timeout = 10s});
  Mutex mutex;
  std::vector<int> order;
  for (int i = 0; i < 50; ++i) {
    pool.post("o", [&, i] {
      MutexLock lock(mutex);
      order.push_back(i);
    });
  }
  pool.join();
  REQUIRE(order.size() == 50);
  for (int i = 0; i < 50; ++i) CHECK(order[size_t(i)] == i);
}

TEST_CASE("workers started for a stall end after being idle, the minimum stays") {
  WorkerPool pool({.min_threads = 1, .max_threads = 6, .lane_limit = 6, .idle_timeout = 100ms});
  Stall stall;
  for (int i = 0; i < 5; ++i) pool.post("f", stall.task());
  REQUIRE(eventually([&] { return stall.entered() == 5; }));
  CHECK(pool.threads() == 5);
  stall.release();
  CHECK(eventually([&] { return pool.threads() == 1; }, 3000ms));
  std::atomic<int> served{0};
  pool.post("f", [&] { ++served; });  // joins the retired threads, and still serves
  CHECK(eventually([&] { return served == 1; }));
  CHECK(pool.threads() == 1);
}

TEST_CASE("join runs every task posted, waiting ones and those posted by tasks included") {
  std::atomic<int> served{0};
  {
    WorkerPool pool({.min_threads = 1, .max_threads = 2, .lane_limit = 1, .idle_timeout = 10s});
    for (int i = 0; i < 20; ++i) {
      pool.post("a", [&] {
        std::this_thread::sleep_for(1ms);
        pool.post("b", [&] { ++served; });
        ++served;
      });
    }
  }  // the destructor joins
  CHECK(served == 40);
}

TEST_CASE("a task that throws is logged and the worker goes on") {
  WorkerPool pool({.min_threads = 1, .max_threads = 1, .lane_limit = 1, .idle_timeout = 10s});
  std::atomic<int> served{0};
  pool.post("a", [] { throw std::runtime_error("boom"); });
  pool.post("a", [&] { ++served; });
  pool.join();
  CHECK(served == 1);
}
