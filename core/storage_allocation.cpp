// SPDX-License-Identifier: BSD-3-Clause
// storage_allocation.cpp — allocated or sparse difference-storage files (see storage_allocation.h).
#include "storage_allocation.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "units.h"

namespace nbdsnap {

uint64_t free_space_of(int fd) {
  struct statvfs vfs {};
  if (::fstatvfs(fd, &vfs) != 0) return UINT64_MAX;
  return static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
}

namespace {

std::string size_text(uint64_t bytes) {
  return format_size(bytes) + " (" + std::to_string(bytes) + " bytes)";
}

Status allocation_error(int rc, int fd, const std::string& path, uint64_t size) {
  if (rc == ENOSPC || rc == EDQUOT) {
    const uint64_t free = free_space_of(fd);
    return {Errc::no_space,
            "cannot allocate " + size_text(size) + " of difference storage for " + path +
                ": its filesystem has " + (free == UINT64_MAX ? "unknown" : size_text(free)) +
                " free; give a smaller size, free space or use another filesystem (or ask for "
                "sparse storage, which may then fill up during copy-on-write)"};
  }
  if (rc == EOPNOTSUPP || rc == EINVAL) {  // EINVAL: a filesystem without fallocate, for glibc's fallback
    return {Errc::not_supported,
            "the filesystem of " + path + " cannot allocate " + size_text(size) +
                " ahead (posix_fallocate: " + std::strerror(rc) +
                "); put difference storage on another filesystem, or ask for sparse storage "
                "and accept that copy-on-write may then find the disk full"};
  }
  return Status::from_errno(rc, "allocate " + size_text(size) + " for " + path);
}

}  // namespace

Status allocate_storage_file(int fd, const std::string& path, uint64_t size, uint64_t original_size,
                             bool sparse) {
  int rc = 0;
  if (sparse) {
    rc = ::ftruncate(fd, static_cast<off_t>(size)) == 0 ? 0 : errno;
    if (rc != 0) return Status::from_errno(rc, "set the size of " + path + " to " + size_text(size));
    return Status::ok();
  }
  // Reserve every block now so running out shows up here, not as a failed copy-on-write later.
  rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
  if (rc == 0) return Status::ok();
  // A failed allocation may have extended or allocated part of the file: give the file its old size back.
  if (::ftruncate(fd, static_cast<off_t>(original_size)) != 0) { /* the error above is the one to report */
  }
  return allocation_error(rc, fd, path, size);
}

}  // namespace nbdsnap
