// SPDX-License-Identifier: BSD-3-Clause
// opened_files.cpp — /proc/self/fd, read with opendir, each entry's file told by stat through the link.
#include "opened_files.h"

#include <dirent.h>

#include <cstdlib>

#include "file_device.h"

namespace nbdsnap {

std::map<int, std::string> open_file_identities() {
  std::map<int, std::string> out;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return out;
  const int own = ::dirfd(dir);
  while (const dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == own) continue;  // ".", "..", the listing itself
    std::string identity;
    // stat() of /proc/self/fd/N is the open file's, whatever its path has become since.
    if (FileDevice::identity_of("/proc/self/fd/" + std::string(entry->d_name), identity) && !identity.empty())
      out.emplace(static_cast<int>(fd), std::move(identity));
  }
  ::closedir(dir);
  return out;
}

bool opened_between(const std::map<int, std::string>& before, const std::map<int, std::string>& after,
                    const std::string& identity) {
  for (const auto& [fd, file] : after) {
    if (file != identity) continue;
    const auto it = before.find(fd);
    if (it == before.end() || it->second != file) return true;
  }
  return false;
}

}  // namespace nbdsnap
