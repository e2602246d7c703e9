// SPDX-License-Identifier: BSD-3-Clause
// served_origin_files.cpp — comparing a storage path with served files by identity (device and inode) and
// place.
#include "served_origin_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>

#include "disk_use.h"
#include "file_device.h"

namespace nbdsnap {
namespace {

// One file however it is reached (FileDevice::identity_of): a block device by its device number (two device
// nodes are one disk), a loop device by its backing file, anything else by file system and inode (hard links
// and symbolic links are one file). False when nothing is there.
bool identity_of(const std::string& path, std::string& out) {
  return FileDevice::identity_of(path, out).is_ok() && !out.empty();
}

// Whether two identities name one disk (a loop device that starts inside its file included: disk_use.h).
bool same_disk(const std::string& a, const std::string& b) {
  return DiskUse{a, 0, 0, ""}.overlaps(DiskUse{b, 0, 0, ""});
}

std::string absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[4096];
  if (::getcwd(cwd, sizeof cwd) == nullptr) return path;
  return std::string(cwd) + "/" + path;
}

// The path with symbolic links, "." and ".." resolved, or the absolute path when it does not exist.
std::string resolved(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr), &std::free);
  return real ? std::string(real.get()) : absolute(path);
}

// The directory that holds the file at `path`, once resolved (so absolute, without a trailing slash).
std::string resolved_parent(const std::string& path) {
  const std::string absolute_path = resolved(path);
  const size_t slash = absolute_path.find_last_of('/');
  return slash == std::string::npos || slash == 0 ? std::string("/") : absolute_path.substr(0, slash);
}

constexpr const char* kWhy =
    ": copy-on-write into it would overwrite an origin's data; use a file the plugin does not serve";

}  // namespace

void ServedOriginFiles::add_file(const std::string& path, const std::string& source) {
  files_.push_back({resolved(path), source});
}

void ServedOriginFiles::add_directory(const std::string& path, const std::string& source) {
  directories_.push_back({resolved(path), source});
}

Status ServedOriginFiles::check_storage(const std::string& path, const std::string& what) const {
  if (path.empty() || empty()) return Status::ok();
  const std::string full = absolute(path);
  if (Status s = check_identity(full, what + " " + path); !s) return s;
  return check_location(full, what + " " + path);
}

Status ServedOriginFiles::check_identity(const std::string& path, const std::string& shown) const {
  std::string storage;
  if (!identity_of(path, storage))
    return Status::ok();  // nothing there yet: where it would be is checked next
  for (const Entry& file : files_) {
    std::string served;
    if (identity_of(file.path, served) && same_disk(served, storage))
      return {Errc::already_exists,
              shown + " is " + file.path + ", which the plugin serves (" + file.source + ")" + kWhy};
  }
  for (const Entry& directory : directories_) {
    std::string served;
    if (identity_of(directory.path, served) && served == storage)
      return {Errc::invalid_argument,
              shown + " is the directory the plugin serves (" + directory.source + ")"};
    DIR* dir = ::opendir(directory.path.c_str());
    if (dir == nullptr) continue;
    Status found;
    while (dirent* entry = ::readdir(dir)) {
      struct stat st {};
      if (::fstatat(::dirfd(dir), entry->d_name, &st, 0) != 0 ||
          !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
        continue;
      std::string entry_identity;
      if (identity_of(directory.path + "/" + entry->d_name, entry_identity) &&
          same_disk(entry_identity, storage)) {
        found = {Errc::already_exists, shown + " is " + directory.path + "/" + entry->d_name +
                                           ", which the plugin serves as export '" + entry->d_name + "' (" +
                                           directory.source + ")" + kWhy};
        break;
      }
    }
    ::closedir(dir);
    if (!found) return found;
  }
  return Status::ok();
}

std::string ServedOriginFiles::path_of_export(const std::string& name) const {
  if (files_.size() == 1 && directories_.empty()) return files_.front().path;
  if (directories_.size() == 1 && files_.empty() && !name.empty() && name != "." && name != ".." &&
      name.find('/') == std::string::npos)
    return directories_.front().path + "/" + name;
  return {};
}

std::string ServedOriginFiles::identity_of_export(const std::string& name) const {
  const std::string path = path_of_export(name);
  if (path.empty()) return {};
  std::string identity;
  if (!FileDevice::identity_of(path, identity)) return {};  // the plugin's open of it fails too
  return identity;
}

Status ServedOriginFiles::check_location(const std::string& path, const std::string& shown) const {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    return Status::ok();  // a directory holds storage files
  // Where the file is, or would be created: a symbolic link is followed to the file it names.
  std::string parent;
  if (!identity_of(resolved_parent(path), parent)) return Status::ok();  // opening it will fail anyway
  for (const Entry& directory : directories_) {
    std::string served;
    if (identity_of(directory.path, served) && served == parent)
      return {Errc::invalid_argument,
              shown + " lies in " + directory.path + ", which the plugin serves (" + directory.source +
                  "): every file there is an export; put storage in another directory"};
  }
  return Status::ok();
}

}  // namespace nbdsnap
