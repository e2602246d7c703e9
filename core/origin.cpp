// SPDX-License-Identifier: BSD-3-Clause
// origin.cpp — origin I/O: reads pass through; writes, trims and zeroes go through the tracker first.
#include "origin.h"

#include "file_device.h"
#include "tracker.h"

namespace nbdsnap {

Origin::Origin(std::string name, std::shared_ptr<BlockDevice> device, uint64_t size, uint64_t minimum_io_size,
               bool read_only, std::unique_ptr<Tracker> tracker, std::string file_identity,
               std::string file_path)
    : name_(std::move(name)),
      file_identity_(std::move(file_identity)),
      file_path_(std::move(file_path)),
      device_(std::move(device)),
      can_trim_(device_ && device_->can_trim()),
      size_(size),
      minimum_io_size_(minimum_io_size == 0 ? 1 : minimum_io_size),
      read_only_(read_only),
      tracker_(std::move(tracker)) {}

void Origin::close_io() {
  tracker_->gate().close();
  read_gate_.close();
}

std::string Origin::content_fingerprint() const {
  if (device_) return device_->content_fingerprint();
  return FileDevice::content_fingerprint_of(file_path_, file_identity_);
}

void Origin::release_device() {
  device_.reset();
}

Origin::~Origin() = default;

Cbt& Origin::cbt() {
  return tracker_->cbt();
}

Status Origin::check_attached() const {
  if (tracker_->gate().is_closed()) {
    return {Errc::io_error, "origin '" + name_ + "' was detached; reconnect once it is attached again"};
  }
  return Status::ok();
}

Status Origin::begin_write(uint64_t offset, uint64_t len, BlockDevice* source, WriteGuard& guard) {
  if (read_only_) return {Errc::read_only, "origin '" + name_ + "' is read-only"};
  if (Status s = check_range(size_, offset, len); !s) return s;
  if (!tracker_->begin_write(offset, len, source, guard)) return check_attached();
  return Status::ok();
}

static Status no_device(const std::string& name) {
  return {Errc::io_error, "origin '" + name + "' has no device attached"};
}

Status Origin::read(void* buf, uint64_t len, uint64_t offset) {
  IoGate::Pass pass(read_gate_);
  if (!pass.entered()) return check_attached();
  if (!device_) return no_device(name_);
  if (Status s = check_range(size_, offset, len); !s) return s;
  if (Status s = device_->pread(buf, len, offset); !s) return s;
  count_read(len);
  return Status::ok();
}

void Origin::count_read(uint64_t len) {
  OriginCounters& counters = *tracker_->counters();
  count(counters.reads);
  count(counters.bytes_read, len);
}

const std::shared_ptr<OriginCounters>& Origin::counters() const {
  return tracker_->counters();
}

bool Origin::make_room_for_write(uint64_t offset, uint64_t len, const WriteGuard& guard) {
  return guard.entered() && tracker_->make_room_for_write(offset, len);
}

// Writes check device_ only once they hold the write gate: a detached origin has none.
// A full file system: if the snapshot holds space the write needs (extents it shares with the origin, or its
// storage files on the origin's file system), it gives that up (corrupted) and the write goes on, once more
// (invariant 2; Tracker::make_room_for_write).
Status Origin::write(const void* buf, uint64_t len, uint64_t offset, bool fua) {
  WriteGuard guard;
  if (Status s = begin_write(offset, len, nullptr, guard); !s) return s;
  if (!device_) return no_device(name_);
  Status s = device_->pwrite(buf, len, offset, fua);
  if (s.code() == Errc::no_space && make_room_for_write(offset, len, guard)) {
    s = device_->pwrite(buf, len, offset, fua);
  }
  return s;
}

// A trim may need blocks too (a punch that splits an extent needs a mapping block on a full file system).
Status Origin::trim(uint64_t offset, uint64_t len, bool fua) {
  WriteGuard guard;
  if (Status s = begin_write(offset, len, nullptr, guard); !s) return s;
  if (!device_) return no_device(name_);
  Status s = device_->trim(offset, len, fua);
  if (s.code() == Errc::no_space && make_room_for_write(offset, len, guard)) {  // as in write()
    s = device_->trim(offset, len, fua);
  }
  return s;
}

Status Origin::zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) {
  WriteGuard guard;
  if (Status s = begin_write(offset, len, nullptr, guard); !s) return s;
  if (!device_) return no_device(name_);
  Status s = device_->zero(offset, len, may_trim, fua);
  if (s.code() == Errc::no_space && make_room_for_write(offset, len, guard)) {  // as in write()
    s = device_->zero(offset, len, may_trim, fua);
  }
  return s;
}

Status Origin::flush() {
  IoGate::Pass pass(read_gate_);
  if (!pass.entered()) return check_attached();
  if (!device_) return no_device(name_);
  return device_->flush();
}

Status Origin::extents(uint64_t offset, uint64_t len, std::vector<Extent>& out) {
  IoGate::Pass pass(read_gate_);
  if (!pass.entered()) return check_attached();
  if (!device_) return no_device(name_);
  if (Status s = check_range(size_, offset, len); !s) return s;
  return device_->extents(offset, len, out);
}

}  // namespace nbdsnap
