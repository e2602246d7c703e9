// SPDX-License-Identifier: BSD-3-Clause
// diff_storage.cpp — bump allocation over areas, limit and low-space accounting.
#include "diff_storage.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "file_device.h"
#include "scope_exit.h"
#include "storage_spec.h"
#include "units.h"

namespace nbdsnap {

DiffStorage::DiffStorage(
    uint64_t limit, uint64_t low_space_threshold, std::function<void(uint64_t)> on_low_space,
    std::function<std::shared_ptr<BlockDevice>(std::shared_ptr<BlockDevice>)> wrap_device, FileCache cache)
    : limit_(limit),
      low_space_threshold_(low_space_threshold),
      on_low_space_(std::move(on_low_space)),
      wrap_device_(std::move(wrap_device)),
      cache_(cache) {}

DiffStorage::~DiffStorage() {
  release();
}

namespace {

// The range of the device a spec asks for, checked against the device's size.
Status area_range(const StorageSpec& spec, uint64_t device_size, uint64_t& offset, uint64_t& length) {
  if (device_size == 0) {
    return {Errc::invalid_argument, spec.path + " has no size: give PATH:SIZE to create it at a size"};
  }
  if (!spec.is_range()) {
    offset = 0;
    length = spec.size > 0 ? std::min(spec.size, device_size) : device_size;
    return Status::ok();
  }
  if (spec.offset >= device_size) {
    return {Errc::out_of_range, "storage " + spec.to_string() + " starts at byte " +
                                    std::to_string(spec.offset) + " but " + spec.path + " has only " +
                                    std::to_string(device_size) + " bytes (" + format_size(device_size) +
                                    ")"};
  }
  offset = spec.offset;
  length = spec.length != 0 ? spec.length : device_size - spec.offset;
  if (length > device_size - offset) {
    return {Errc::out_of_range, "storage " + spec.to_string() + " ends at byte " +
                                    std::to_string(offset + length) + " but " + spec.path + " has only " +
                                    std::to_string(device_size) + " bytes (" + format_size(device_size) +
                                    "): shorten the range"};
  }
  return Status::ok();
}

// The use a spec makes of its file: the range, or (a size, or nothing) the whole file.
DiskUse wanted_use(const StorageSpec& spec, const std::string& identity) {
  return {identity, spec.offset, spec.is_range() ? spec.length : 0, ""};
}

// A directory given as difference storage (open() fails with EISDIR, an "I/O error" that tells nothing):
// refused with what to give instead.
Status check_not_directory(const StorageSpec& spec) {
  struct stat st {};
  if (::stat(spec.path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return Status::ok();
  return {Errc::invalid_argument,
          "difference storage " + spec.path + " is a directory: give a file in it (" + spec.path +
              "/NAME.diff:SIZE creates one of SIZE bytes), an existing file or a block device"};
}

}  // namespace

Status DiffStorage::check_unused(const StorageSpec& spec, const DiskUse& wanted,
                                 const std::vector<DiskUse>& in_use) const {
  if (const DiskUse* other = find_overlap(in_use, wanted)) {
    return {Errc::already_exists, "storage " + spec.to_string() + " overlaps " + other->user + " (" +
                                      other->extent_text() + " " + spec.path +
                                      "): copy-on-write would overwrite what it preserves"};
  }
  const std::vector<DiskUse> own_areas = disk_uses("this snapshot's storage");
  if (const DiskUse* own = find_overlap(own_areas, wanted)) {
    return {Errc::already_exists, "storage " + spec.to_string() + " overlaps " + own->extent_text() + " " +
                                      spec.path + ", already in this snapshot's storage"};
  }
  return Status::ok();
}

Status DiffStorage::open_spec_device(const StorageSpec& spec, std::shared_ptr<BlockDevice>& out,
                                     bool& created) {
  created = false;
  std::unique_ptr<FileDevice> file;
  Status s = spec.size > 0 ? FileDevice::create(spec.path, spec.size, file, created, cache_, spec.sparse)
                           : FileDevice::open(spec.path, false, file, cache_);
  if (!s) return s;
  out = std::move(file);
  if (wrap_device_) out = wrap_device_(std::move(out));
  return Status::ok();
}

Status DiffStorage::append(const StorageSpec& spec, const AreaRequirements& requirements) {
  const std::vector<DiskUse>& in_use = requirements.in_use;
  const OpenStorageLookup& open_elsewhere = requirements.open_elsewhere;
  if (Status s = check_storage_spec(spec); !s) return s;
  std::string identity;
  if (Status s = FileDevice::identity_of(spec.path, identity); !s) return s;
  if (Status s = check_not_directory(spec); !s) return s;
  if (identity.empty() && spec.size == 0) {
    return {Errc::not_found, "difference storage " + spec.path + " does not exist: " +
                                 (spec.is_range() ? "a range needs an existing file or block device"
                                                  : "give PATH:SIZE to create it, or create it first")};
  }
  // Refused before anything is opened: an origin's block device must not even be opened again (O_EXCL).
  if (Status s = check_unused(spec, wanted_use(spec, identity), in_use); !s) return s;
  std::shared_ptr<BlockDevice> device = identity.empty() ? nullptr : open_device(identity);
  if (!device && !identity.empty() && open_elsewhere) device = open_elsewhere(identity);
  bool created = false;
  // Whatever ends this call without the area (an error, std::bad_alloc), a file it created goes again.
  ScopeExit give_up([&] {
    device.reset();
    if (created) ::unlink(spec.path.c_str());
  });
  if (!device) {  // (a shared device is never grown: a size means the whole file, which overlaps its areas)
    if (Status s = open_spec_device(spec, device, created); !s) return s;
  }
  // The open file is what counts: the path may have been replaced since it was looked at. A file this call
  // created is new to everyone: a use of its identity in `in_use` is a removed file whose inode it got back
  // from a destroy still releasing it, which the engine's check under its lock answers busy (a concurrent
  // create in the integrity soak was refused already_exists, as if for good).
  if (const std::string opened = device->file_identity(); opened != identity) {
    identity = opened;
    if (!created) {
      if (Status s = check_unused(spec, wanted_use(spec, identity), in_use); !s) return s;
    }
  }
  uint64_t offset = 0, length = 0;
  if (Status s = area_range(spec, device->size(), offset, length); !s) return s;
  if (length < requirements.minimum_size) {
    return {Errc::invalid_argument, "storage " + spec.to_string() + " holds " + format_size(length) +
                                        ", less than " + requirements.minimum_reason + " (" +
                                        format_size(requirements.minimum_size) +
                                        "): copy-on-write could store nothing in it; give at least " +
                                        std::to_string(requirements.minimum_size) + " bytes"};
  }
  MutexLock lock(mutex_);
  for (const Area& a : areas_) {  // appended meanwhile by a concurrent append
    if (a.device &&
        DiskUse{a.identity, a.info.offset, a.info.size, ""}.overlaps({identity, offset, length, ""})) {
      return {Errc::already_exists, "storage " + spec.to_string() + " is already in this storage"};
    }
  }
  areas_.push_back({device, {spec.path, offset, length, created, created && spec.sparse}, identity, 0});
  low_space_signalled_ = false;
  give_up.dismiss();  // the area's: release() removes the file it created
  return Status::ok();
}

uint64_t DiffStorage::adopt(DiffStorage& staged) {
  // Room first, while the areas are still `staged`'s (whose release() removes the files they created): the
  // push_backs below then cannot throw std::bad_alloc and lose an area half-way. Only adopt() grows the areas
  // of a storage in use (append() works on storage not yet shared), and the engine runs one per snapshot.
  size_t count = 0;
  {
    MutexLock lock(staged.mutex_);
    count = staged.areas_.size();
  }
  {
    MutexLock lock(mutex_);
    areas_.reserve(areas_.size() + count);
  }
  std::vector<Area> moved;
  {
    MutexLock lock(staged.mutex_);  // a leaf: released before ours is taken
    moved.swap(staged.areas_);
    staged.current_ = 0;
  }
  uint64_t bytes = 0;
  MutexLock lock(mutex_);
  for (Area& area : moved) {
    bytes += area.info.size;
    areas_.push_back(std::move(area));
  }
  low_space_signalled_ = false;
  return bytes;
}

void DiffStorage::append_device(std::shared_ptr<BlockDevice> device, const std::string& label) {
  MutexLock lock(mutex_);
  const uint64_t size = device->size();
  std::string identity = device->file_identity();
  areas_.push_back({std::move(device), {label, 0, size, false}, std::move(identity), 0});
  low_space_signalled_ = false;
}

std::vector<DiskUse> DiffStorage::disk_uses(const std::string& user) const {
  MutexLock lock(mutex_);
  std::vector<DiskUse> out;
  for (const Area& a : areas_) {
    if (a.device && !a.identity.empty()) out.push_back({a.identity, a.info.offset, a.info.size, user});
  }
  return out;
}

std::shared_ptr<BlockDevice> DiffStorage::open_device(const std::string& identity) const {
  MutexLock lock(mutex_);
  for (const Area& a : areas_) {
    if (a.device && !identity.empty() && a.identity == identity) return a.device;
  }
  return nullptr;
}

Status DiffStorage::full_status(uint64_t bytes) const {
  uint64_t total = 0;
  for (const Area& a : areas_) total += a.info.size;
  if (used_ == 0) {  // the engine refuses areas smaller than a chunk, so this is not expected
    return {Errc::no_space, "no difference storage area can hold a chunk of " + format_size(bytes) + " (" +
                                std::to_string(areas_.size()) + " area(s), " + format_size(total) + ")"};
  }
  return {Errc::no_space,
          "difference storage is full: " + format_size(used_) + " of " + format_size(total) + " in " +
              std::to_string(areas_.size()) +
              " area(s) hold copied chunks; append storage before it fills (low_free_space events)"};
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
        result = full_status(bytes);
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

std::shared_ptr<BlockDevice> DiffStorage::device_of(uint32_t area, uint64_t& start) const {
  MutexLock lock(mutex_);
  if (area >= areas_.size()) return nullptr;
  start = areas_[area].info.offset;
  return areas_[area].device;
}

Status DiffStorage::write(const StorageLocation& at, const void* buf, uint64_t len,
                          uint64_t offset_in_piece) {
  uint64_t start = 0;
  const auto device = device_of(at.area, start);
  if (!device) return {Errc::io_error, "difference storage was released"};
  return device->pwrite(buf, len, start + at.offset + offset_in_piece, false);
}

Status DiffStorage::read(const StorageLocation& at, void* buf, uint64_t len, uint64_t offset_in_piece) {
  uint64_t start = 0;
  const auto device = device_of(at.area, start);
  if (!device) return {Errc::io_error, "difference storage was released"};
  return device->pread(buf, len, start + at.offset + offset_in_piece);
}

uint32_t DiffStorage::filling_area() const {
  MutexLock lock(mutex_);
  return static_cast<uint32_t>(current_);
}

std::shared_ptr<BlockDevice> DiffStorage::piece_device(const StorageLocation& at,
                                                       uint64_t& device_offset) const {
  uint64_t start = 0;
  auto device = device_of(at.area, start);
  device_offset = start + at.offset;
  return device;
}

OriginFileSystem OriginFileSystem::of(const BlockDevice* origin, const std::string& file_identity) {
  OriginFileSystem out;
  if (const SharableFile* file = origin ? origin->sharable_file() : nullptr; file != nullptr) {
    struct stat st {};
    if (::fstat(file->fd, &st) == 0) {
      out.kind = Kind::file_system;
      out.device = static_cast<uint64_t>(st.st_dev);
    }
    return out;
  }
  // No regular file open: the identity tells. A loop device's is its backing file's (whose file system its
  // writes take blocks from), the filter's that of the file behind the export (ServedOriginFiles).
  const std::string& identity = file_identity.empty() && origin ? origin->file_identity() : file_identity;
  if (FileDevice::file_system_of(identity, out.device)) {
    out.kind = Kind::file_system;
  } else if (identity.rfind("block ", 0) == 0) {
    out.kind = Kind::block_device;
  }
  return out;
}

std::vector<std::shared_ptr<BlockDevice>> DiffStorage::created_devices() const {
  std::vector<std::shared_ptr<BlockDevice>> devices;
  MutexLock lock(mutex_);
  for (const Area& area : areas_) {
    if (area.info.created_by_engine && area.device) devices.push_back(area.device);
  }
  return devices;
}

bool DiffStorage::created_files_hold_blocks(const OriginFileSystem& origin) const {
  if (origin.kind == OriginFileSystem::Kind::block_device) return false;
  for (const auto& device : created_devices()) {
    const SharableFile* file = device->sharable_file();
    struct stat st {};
    if (file == nullptr || ::fstat(file->fd, &st) != 0 || st.st_blocks == 0) continue;
    if (origin.kind == OriginFileSystem::Kind::unknown || static_cast<uint64_t>(st.st_dev) == origin.device)
      return true;
  }
  return false;
}

bool DiffStorage::empty_created_files() {
  const std::vector<std::shared_ptr<BlockDevice>> devices = created_devices();
  bool emptied = false;
  for (const auto& device : devices) {
    const SharableFile* file = device->sharable_file();
    if (file != nullptr && empty_file(file->fd) == 0) emptied = true;
  }
  return emptied;
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
