// SPDX-License-Identifier: BSD-3-Clause
// memory_device.h — a sparse in-memory BlockDevice for tests and demos, plus a fault-injecting wrapper.
//
// Memory grows with the pages written, so a 16 TiB "virtual" origin costs nothing until touched.
#pragma once

#include <atomic>
#include <map>
#include <memory>

#include "block_device.h"
#include "mutex.h"

namespace nbdsnap {

class MemoryDevice final : public BlockDevice {
 public:
  explicit MemoryDevice(uint64_t size);
  uint64_t size() const override { return size_; }
  Status pread(void* buf, uint64_t len, uint64_t offset) override;
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override;
  Status flush() override { return Status::ok(); }
  Status trim(uint64_t offset, uint64_t len, bool fua) override;
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override;
  Status extents(uint64_t offset, uint64_t len, std::vector<Extent>& out) override;
  bool can_trim() const override { return true; }
  // Bytes of pages held.
  uint64_t allocated_bytes() const;

 private:
  static constexpr uint64_t kPageSize = 4096;
  Status write_or_zero(const void* buf, uint64_t len, uint64_t offset);
  const uint64_t size_;
  mutable Mutex mutex_;
  std::map<uint64_t, std::unique_ptr<uint8_t[]>> pages_ GUARDED_BY(mutex_);  // page index -> page
};

// Wraps a device and fails chosen operations: for tests of COW read errors, storage write errors, ENOSPC.
class FaultyDevice final : public BlockDevice {
 public:
  explicit FaultyDevice(std::shared_ptr<BlockDevice> inner) : inner_(std::move(inner)) {}
  uint64_t size() const override { return inner_->size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override;
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override;
  Status flush() override { return inner_->flush(); }
  Status trim(uint64_t offset, uint64_t len, bool fua) override { return inner_->trim(offset, len, fua); }
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override;
  bool can_trim() const override { return inner_->can_trim(); }

  std::atomic<bool> fail_reads{false};
  std::atomic<bool> fail_writes{false};
  std::atomic<bool> writes_no_space{false};  // writes fail with no_space (a full file system)

 private:
  std::shared_ptr<BlockDevice> inner_;
};

}  // namespace nbdsnap
