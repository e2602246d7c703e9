// SPDX-License-Identifier: BSD-3-Clause
// stalling_device.h — test doubles for a disk or file system that stops answering (a hung NFS server, a
// frozen file system), and a bounded way to call the engine beside one: the tests of control calls that must
// not wait for another call's stalled I/O (destroy_stalled_test.cpp, control_io_stalled_test.cpp).
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>

#include "block_device.h"

namespace nbdsnap::test {

// A place where test I/O waits while it is stalled, as I/O of a disk that does not answer does. stall_next()
// stalls only the next one to arrive (others pass), stall() all of them until answer().
class Stall {
 public:
  void stall() {
    std::scoped_lock lock(mutex_);
    stalled_ = true;
  }
  void stall_next() {
    std::scoped_lock lock(mutex_);
    next_ = true;
  }
  void answer() {
    std::scoped_lock lock(mutex_);
    stalled_ = false;
    next_ = false;
    answered_ = true;
    changed_.notify_all();
  }
  // Waits here while stalled (or when this is the one stall_next() asked for).
  void pass() {
    std::unique_lock lock(mutex_);
    if (!stalled_ && !next_) return;
    next_ = false;
    answered_ = false;
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return answered_; });
    --waiting_;
  }
  // Waits (at most 10 s) until some I/O waits for the stall.
  bool await_waiting() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::seconds(10), [this] { return waiting_ > 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool stalled_ = false;   // GUARDED_BY(mutex_)
  bool next_ = false;      // GUARDED_BY(mutex_)
  bool answered_ = false;  // GUARDED_BY(mutex_)
  int waiting_ = 0;        // GUARDED_BY(mutex_)
};

// A device whose reads wait while it is stalled, as reads of a disk that does not answer do; and whose
// writes wait while stall_writes() holds them, as an NBD write stuck in pwrite on a frozen file system does.
class StallingDevice final : public BlockDevice {
 public:
  explicit StallingDevice(std::shared_ptr<BlockDevice> inner) : inner_(std::move(inner)) {}
  uint64_t size() const override { return inner_->size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override {
    stall_.pass();
    return inner_->pread(buf, len, offset);
  }
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    write_stall_.pass();
    return inner_->pwrite(buf, len, offset, fua);
  }
  Status flush() override { return inner_->flush(); }
  Status trim(uint64_t offset, uint64_t len, bool fua) override { return inner_->trim(offset, len, fua); }
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override {
    return inner_->zero(offset, len, may_trim, fua);
  }

  void stall() { stall_.stall(); }
  // Holds every write until answer().
  void stall_writes() { write_stall_.stall(); }
  void answer() {
    stall_.answer();
    write_stall_.answer();
  }
  // Waits (at most 10 s) until a read waits for the stall.
  bool await_waiting_read() { return stall_.await_waiting(); }
  // Waits (at most 10 s) until a write waits for the stall.
  bool await_waiting_write() { return write_stall_.await_waiting(); }

 private:
  std::shared_ptr<BlockDevice> inner_;
  Stall stall_;
  Stall write_stall_;
};

// A difference-storage device (EngineConfig::wrap_storage_device) whose closing waits at `stall`, as the
// close and unlink of a file on a frozen file system do. Passes everything else to the file.
class StallingClose final : public BlockDevice {
 public:
  StallingClose(std::shared_ptr<BlockDevice> inner, std::shared_ptr<Stall> stall)
      : inner_(std::move(inner)), stall_(std::move(stall)) {}
  ~StallingClose() override { stall_->pass(); }
  uint64_t size() const override { return inner_->size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override { return inner_->pread(buf, len, offset); }
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    return inner_->pwrite(buf, len, offset, fua);
  }
  Status flush() override { return inner_->flush(); }
  Status trim(uint64_t offset, uint64_t len, bool fua) override { return inner_->trim(offset, len, fua); }
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override {
    return inner_->zero(offset, len, may_trim, fua);
  }
  Status extents(uint64_t offset, uint64_t len, std::vector<Extent>& out) override {
    return inner_->extents(offset, len, out);
  }
  bool can_trim() const override { return inner_->can_trim(); }
  uint64_t minimum_io_size() const override { return inner_->minimum_io_size(); }
  std::string file_identity() const override { return inner_->file_identity(); }
  const SharableFile* sharable_file() const override { return inner_->sharable_file(); }

 private:
  std::shared_ptr<BlockDevice> inner_;
  std::shared_ptr<Stall> stall_;
};

// Runs `call` on a thread of its own and returns its status. A call that takes more than 5 s fails the test,
// and the stall then answers so that it can return.
template <typename Stalled>
Status within_five_seconds(Stalled& stalled, const char* what, const std::function<Status()>& call) {
  auto result = std::async(std::launch::async, call);
  if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    FAIL_CHECK(std::string(what) << " waited for another control call's stalled I/O");
    stalled.answer();
  }
  return result.get();
}

}  // namespace nbdsnap::test
