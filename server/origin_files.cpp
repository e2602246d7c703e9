// origin_files.cpp — opening origin files (see origin_files.h).
#include "origin_files.h"

#include "file_device.h"

namespace nbdsnap {

Status OriginFiles::attach(const std::string& name, const std::string& path, bool read_only) {
  std::unique_ptr<FileDevice> device;
  Status status = FileDevice::open(path, read_only, device);
  if (!status.is_ok()) return status;
  const std::pair<uint64_t, uint64_t> identity{device->device_id(), device->inode()};
  std::scoped_lock lock(mutex_);
  for (const auto& [other, file] : files_) {
    if (file == identity) return {Errc::already_exists, path + " is already served as origin '" + other + "'"};
  }
  status = engine_.attach_origin(name, std::shared_ptr<BlockDevice>(std::move(device)), read_only);
  if (status.is_ok()) files_[name] = identity;
  return status;
}

void OriginFiles::forget(const std::string& name) {
  std::scoped_lock lock(mutex_);
  files_.erase(name);
}

}  // namespace nbdsnap
