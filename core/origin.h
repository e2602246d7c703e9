// SPDX-License-Identifier: BSD-3-Clause
// origin.h — a tracked disk: I/O on an origin export goes through here so CBT and copy-on-write see it.
//
// Front ends that write through the Origin (nbdsnapd) call write/trim/zero. Front ends that must write on
// their own path (the nbdkit filter writes to `next`) call begin_write() first and keep the guard until their
// write has returned; `source` is the device to read old data from for copy-on-write (nbdkit's next).
//
// Lifecycle: attached (I/O passes) -> detached (Engine::detach_origin closed its gates and let go of the
// device). Once detached, every call fails with io_error naming the origin, and front ends that read on their
// own path call check_attached() first: a connection that still holds a detached origin can never write it
// untracked. Letting go of the device at detach closes its file (and releases the file's lock, file_lock.h)
// while such connections still hold the Origin, so the file can be attached again at once.
// Thread-safe: front ends call it from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "block_device.h"
#include "cbt.h"
#include "io_counters.h"
#include "io_gate.h"
#include "status.h"

namespace nbdsnap {

class Tracker;

class Origin {
 public:
  // Holds the origin's write gate for one write (IoGate::Pass). Releasing it lets a pending take proceed.
  using WriteGuard = IoGate::Pass;

  // file_identity: the disk behind the origin (BlockDevice::file_identity() of its device, or what the
  // front end named for a device-less origin: Engine::attach_origin); empty: unknown. file_path: for a
  // device-less origin, a path of that file (its content fingerprint is read there); empty: unknown.
  Origin(std::string name, std::shared_ptr<BlockDevice> device, uint64_t size, uint64_t minimum_io_size,
         bool read_only, std::unique_ptr<Tracker> tracker, std::string file_identity = {},
         std::string file_path = {});
  ~Origin();
  Origin(const Origin&) = delete;
  Origin& operator=(const Origin&) = delete;

  const std::string& name() const { return name_; }
  uint64_t size() const { return size_; }
  // The device's minimum I/O size in bytes (1: none); chunks and tracking blocks are never smaller.
  uint64_t minimum_io_size() const { return minimum_io_size_; }
  bool read_only() const { return read_only_; }
  // Whether the device can trim (punch holes): what the origin export advertises.
  bool can_trim() const { return can_trim_; }
  // The device the engine was given (may be null for front ends that always pass a source). REQUIRES: the
  // origin is attached and the caller serialises with detach (the engine's control lock).
  BlockDevice* device() const { return device_.get(); }
  const std::shared_ptr<BlockDevice>& shared_device() const { return device_; }
  // The file or disk behind the origin, as BlockDevice::file_identity() names it (disk_use.h); empty:
  // unknown. Fixed at attach: it stays after release_device(), when the origin is no longer the engine's.
  const std::string& file_identity() const { return file_identity_; }
  // BlockDevice::content_fingerprint() of the device, or of the file at file_path for a device-less origin
  // (FileDevice::content_fingerprint_of); empty: cannot tell. An fstat or a stat: may wait for a stalled
  // file system. REQUIRES: as device().
  std::string content_fingerprint() const;

  // Detaching (Engine::detach_origin): close_io() refuses every later request and waits for those in flight;
  // release_device() then lets go of the device. REQUIRES for release_device(): close_io() has returned.
  void close_io();
  void release_device();

  // I/O through the origin's device. Writes, trims and zeroes pass the tracker first.
  Status read(void* buf, uint64_t len, uint64_t offset);
  Status write(const void* buf, uint64_t len, uint64_t offset, bool fua);
  Status trim(uint64_t offset, uint64_t len, bool fua);
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua);
  Status flush();
  Status extents(uint64_t offset, uint64_t len, std::vector<Extent>& out);

  // Marks CBT and copies old chunks for live snapshots before a write of [offset, offset+len), and holds the
  // write gate in `guard`. Never fails because of a snapshot (a failed copy corrupts the snapshot instead);
  // fails for a read-only origin, a bad range or a detached origin (io_error).
  Status begin_write(uint64_t offset, uint64_t len, BlockDevice* source, WriteGuard& guard);
  // A write, zero or trim admitted by begin_write failed with ENOSPC: the snapshot gives way so the write can
  // go on (invariant 2; Tracker::make_room_for_write has the rule). True: issue it once more, still holding
  // `guard`. write(), trim() and zero() call it themselves; front ends that write on their own path (the
  // nbdkit filter) call it after their write failed with ENOSPC. REQUIRES: `guard` holds the gate of that
  // write (entered); no lock held. May corrupt a snapshot; never fails otherwise.
  bool make_room_for_write(uint64_t offset, uint64_t len, const WriteGuard& guard);
  // ok while attached; io_error naming the origin once it was detached.
  Status check_attached() const;

  // Front ends that read the origin on their own path (the nbdkit filter reads `next`) count each read that
  // succeeded here; read() counts its own.
  void count_read(uint64_t len);
  // The origin's counters (io_counters.h), shared with the chunk maps of its snapshots.
  const std::shared_ptr<OriginCounters>& counters() const;

 private:
  // The tracker and the CBT are the engine's: front ends reach them only through Engine's narrow calls (CBT
  // reads, mark_dirty, reset, checkpoint delete) and through the I/O calls above, never directly, so no
  // front end can switch copy-on-write or change a map behind the engine's locks.
  friend class Engine;
  friend struct OriginTestAccess;  // tests only: hold the write gate as a take does
                                   // (core/tests/test_support.h)
  Tracker& tracker() { return *tracker_; }
  Cbt& cbt();

  const std::string name_;
  const std::string file_identity_;
  const std::string file_path_;
  // Reset only by release_device(), once no request can be inside either gate: readers hold a pass.
  std::shared_ptr<BlockDevice> device_;
  const bool can_trim_;
  IoGate
      read_gate_;  // reads, flushes, extents: closed at detach (never frozen: a take does not wait for reads)
  const uint64_t size_;
  const uint64_t minimum_io_size_;
  const bool read_only_;
  const std::unique_ptr<Tracker> tracker_;
};

}  // namespace nbdsnap
