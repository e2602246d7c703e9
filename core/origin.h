// origin.h — a tracked disk: I/O on an origin export goes through here so CBT and copy-on-write see it.
//
// Front ends that write through the Origin (nbdsnapd) call write/trim/zero. Front ends that must write on
// their own path (the nbdkit filter writes to `next`) call begin_write() first and keep the guard until their
// write has returned; `source` is the device to read old data from for copy-on-write (nbdkit's next).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "block_device.h"
#include "cbt.h"
#include "status.h"

namespace nbdsnap {

class Tracker;

class Origin {
 public:
  // Holds the origin's write gate open for one write. Move-only; releasing it lets a pending take proceed.
  class WriteGuard {
   public:
    WriteGuard() = default;
    explicit WriteGuard(Tracker* tracker) : tracker_(tracker) {}
    WriteGuard(WriteGuard&& other) noexcept : tracker_(other.tracker_) { other.tracker_ = nullptr; }
    WriteGuard& operator=(WriteGuard&& other) noexcept;
    WriteGuard(const WriteGuard&) = delete;
    WriteGuard& operator=(const WriteGuard&) = delete;
    ~WriteGuard() { release(); }
    void release();

   private:
    Tracker* tracker_ = nullptr;
  };

  Origin(std::string name, std::shared_ptr<BlockDevice> device, uint64_t size, bool read_only,
         std::unique_ptr<Tracker> tracker);
  ~Origin();
  Origin(const Origin&) = delete;
  Origin& operator=(const Origin&) = delete;

  const std::string& name() const { return name_; }
  uint64_t size() const { return size_; }
  bool read_only() const { return read_only_; }
  // The device the engine was given (may be null for front ends that always pass a source).
  BlockDevice* device() const { return device_.get(); }
  const std::shared_ptr<BlockDevice>& shared_device() const { return device_; }

  Status read(void* buf, uint64_t len, uint64_t offset);
  Status write(const void* buf, uint64_t len, uint64_t offset, bool fua);
  Status trim(uint64_t len, uint64_t offset, bool fua);
  Status zero(uint64_t len, uint64_t offset, bool may_trim, bool fua);
  Status flush();
  Status extents(uint64_t len, uint64_t offset, std::vector<Extent>& out);

  // Marks CBT and copies old chunks for live snapshots before a write of [offset, offset+len).
  // Never fails because of a snapshot (a failed copy corrupts the snapshot instead); fails only for a bad range.
  Status begin_write(uint64_t len, uint64_t offset, BlockDevice* source, WriteGuard& guard);

  Tracker& tracker() { return *tracker_; }
  Cbt& cbt();

 private:
  const std::string name_;
  const std::shared_ptr<BlockDevice> device_;
  const uint64_t size_;
  const bool read_only_;
  const std::unique_ptr<Tracker> tracker_;
};

}  // namespace nbdsnap
