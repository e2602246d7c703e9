// SPDX-License-Identifier: BSD-3-Clause
// state_directory.cpp — checking, or creating, the CBT state directory (see state_directory.h).
#include "state_directory.h"

#include <sys/stat.h>

#include <cerrno>

namespace nbdsnap {

namespace {

std::string parent_of(const std::string& path) {
  std::string parent = path;
  while (parent.size() > 1 && parent.back() == '/') parent.pop_back();  // "dir/" names dir
  const auto slash = parent.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : parent.substr(0, slash);
}

}  // namespace

Status prepare_state_directory(const std::string& path, const std::string& option) {
  const std::string name = option + path;
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::ok();
    return {Errc::invalid_argument, name +
                                        " is not a directory: give a directory for CBT state (or a new path "
                                        "in an existing directory, created then)"};
  }
  if (errno != ENOENT) return Status::from_errno(errno, name);
  const std::string parent = parent_of(path);
  if (stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return {Errc::not_found, name + " does not exist, and neither does its parent directory " + parent +
                                 ": create it (mkdir -p " + path + ") or correct the path"};
  }
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::from_errno(errno, name + ": cannot create the directory");
  }
  return Status::ok();
}

}  // namespace nbdsnap
