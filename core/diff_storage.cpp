// diff_storage.cpp — bump allocation over areas, limit and low-space accounting.
#include "diff_storage.h"

#include <unistd.h>

#include <algorithm>

#include "file_device.h"
#include "units.h"

namespace nbdsnap {

DiffStorage::DiffStorage(uint64_t limit, uint64_t low_space_threshold, std::function<void(uint64_t)> on_low_space,
                         std::function<std::shared_ptr<BlockDevice>(std::shared_ptr<BlockDevice>)> wrap_device)
    : limit_(limit),
      low_space_threshold_(low_space_threshold),
      on_low_space_(std::move(on_low_space)),
      wrap_device_(std::move(wrap_device)) {}

DiffStorage::~DiffStorage() { release(); }

Status DiffStorage::append(const StorageSpec& spec, const std::vector<std::string>& in_use) {
  if (spec.path.empty()) return {Errc::invalid_argument, "difference storage needs a path"};
  std::unique_ptr<FileDevice> file;
  bool created = false;
  Status s = spec.size > 0 ? FileDevice::create(spec.path, spec.size, file, created)
                           : FileDevice::open(spec.path, false, file);
  if (!s) return s;
  auto refuse = [&](Status status) {
    file.reset();
    if (created) ::unlink(spec.path.c_str());
    return status;
  };
  if (file->size() == 0) return refuse({Errc::invalid_argument, spec.path + " has no size: give PATH:SIZE"});
  const std::string identity = file->file_identity();
  if (std::find(in_use.begin(), in_use.end(), identity) != in_use.end()) {
    return refuse({Errc::already_exists, spec.path + " is an origin or storage of another snapshot"});
  }
  const uint64_t size = spec.size > 0 ? std::min(spec.size, file->size()) : file->size();
  std::shared_ptr<BlockDevice> device = std::move(file);
  if (wrap_device_) device = wrap_device_(std::move(device));
  MutexLock lock(mutex_);
  for (const Area& a : areas_) {
    if (a.device && !identity.empty() && a.identity == identity) {
      device.reset();
      if (created) ::unlink(spec.path.c_str());
      return {Errc::already_exists, spec.path + " is already in this storage"};
    }
  }
  areas_.push_back({device, {spec.path, size, created}, identity, 0});
  low_space_signalled_ = false;
  return Status::ok();
}

void DiffStorage::append_device(std::shared_ptr<BlockDevice> device, const std::string& label) {
  MutexLock lock(mutex_);
  const uint64_t size = device->size();
  std::string identity = device->file_identity();
  areas_.push_back({std::move(device), {label, size, false}, std::move(identity), 0});
  low_space_signalled_ = false;
}

std::vector<std::string> DiffStorage::file_identities() const {
  MutexLock lock(mutex_);
  std::vector<std::string> out;
  for (const Area& a : areas_) {
    if (a.device && !a.identity.empty()) out.push_back(a.identity);
  }
  return out;
}

uint64_t DiffStorage::free_locked() const {
  uint64_t in_areas = 0;
  for (size_t i = current_; i < areas_.size(); ++i) in_areas += areas_[i].info.size - areas_[i].cursor;
  if (limit_ == 0) return in_areas;
  return std::min(in_areas, limit_ > used_ ? limit_ - used_ : 0);
}

Status DiffStorage::allocate(uint64_t bytes, StorageLocation& out) {
  uint64_t low_space_request = 0;
  Status result;
  {
    MutexLock lock(mutex_);
    if (limit_ != 0 && used_ + bytes > limit_) {
      result = {Errc::no_space, "difference storage limit of " + format_size(limit_) + " reached"};
    } else {
      while (current_ < areas_.size() && areas_[current_].info.size - areas_[current_].cursor < bytes) {
        ++current_;  // the tail of this area is too small for a piece: move on
      }
      if (current_ == areas_.size()) {
        result = {Errc::no_space, "difference storage is full (" + format_size(used_) + " used)"};
      } else {
        Area& area = areas_[current_];
        out = {static_cast<uint32_t>(current_), area.cursor};
        area.cursor += bytes;
        used_ += bytes;
      }
    }
    if (!low_space_signalled_ && free_locked() < low_space_threshold_) {
      low_space_signalled_ = true;
      low_space_request = std::max(low_space_threshold_, bytes);
    }
  }
  if (low_space_request && on_low_space_) on_low_space_(low_space_request);
  return result;
}

std::shared_ptr<BlockDevice> DiffStorage::device_of(uint32_t area) const {
  MutexLock lock(mutex_);
  return area < areas_.size() ? areas_[area].device : nullptr;
}

Status DiffStorage::write(const StorageLocation& at, const void* buf, uint64_t len, uint64_t offset_in_piece) {
  const auto device = device_of(at.area);
  if (!device) return {Errc::io_error, "difference storage was released"};
  return device->pwrite(buf, len, at.offset + offset_in_piece, false);
}

Status DiffStorage::read(const StorageLocation& at, void* buf, uint64_t len, uint64_t offset_in_piece) {
  const auto device = device_of(at.area);
  if (!device) return {Errc::io_error, "difference storage was released"};
  return device->pread(buf, len, at.offset + offset_in_piece);
}

void DiffStorage::release() {
  std::vector<Area> areas;
  {
    MutexLock lock(mutex_);
    areas.swap(areas_);
    current_ = 0;
  }
  for (Area& area : areas) {
    area.device.reset();
    if (area.info.created_by_engine) ::unlink(area.info.path.c_str());
  }
}

uint64_t DiffStorage::total() const {
  MutexLock lock(mutex_);
  uint64_t sum = 0;
  for (const Area& a : areas_) sum += a.info.size;
  return sum;
}

uint64_t DiffStorage::used() const {
  MutexLock lock(mutex_);
  return used_;
}

uint64_t DiffStorage::free_bytes() const {
  MutexLock lock(mutex_);
  return free_locked();
}

std::vector<StorageAreaInfo> DiffStorage::areas() const {
  MutexLock lock(mutex_);
  std::vector<StorageAreaInfo> infos;
  for (const Area& a : areas_) infos.push_back(a.info);
  return infos;
}

}  // namespace nbdsnap
