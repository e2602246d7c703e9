// origin_files.h — attaches files and block devices to the engine as origins, refusing the same file twice.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "engine.h"

namespace nbdsnap {

class OriginFiles {
 public:
  explicit OriginFiles(Engine& engine) : engine_(engine) {}
  // Opens PATH with FileDevice::open and attaches it as origin NAME.
  Status attach(const std::string& name, const std::string& path, bool read_only);
  // Forgets the file of a detached origin.
  void forget(const std::string& name);

 private:
  Engine& engine_;
  std::mutex mutex_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> files_;  // GUARDED_BY(mutex_); origin -> (dev, inode)
};

}  // namespace nbdsnap
