// SPDX-License-Identifier: BSD-3-Clause
// durable_file.cpp — write, sync, rename, sync the directory (see durable_file.h).
#include "durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "object_file_name.h"

namespace nbdsnap {

namespace {

// Writes all of `bytes` to a new file at `path` and syncs it.
Status write_and_sync(const std::string& path, const std::string& bytes, mode_t mode, NewFileMode how) {
  // A leftover of an interrupted write goes. What cannot go is the error, and only the user can clear it: a
  // directory (EISDIR), another user's file in a sticky directory such as /tmp (EPERM).
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::from_errno(errno, "cannot remove " + path +
                                         ", left there by an interrupted write or by another user (remove "
                                         "it, then try again)");
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return Status::from_errno(errno, "write " + path);
  size_t done = 0;
  int err = 0;
  if (how == NewFileMode::exactly && ::fchmod(fd, mode) != 0) err = errno;
  while (err == 0 && done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : ENOSPC;  // a regular file writes nothing only when it has no room
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;  // NFS reports a failed write back at close
  return err == 0 ? Status::ok() : Status::from_errno(err, "write " + path);
}

std::string directory_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Status replace_file_durably(const std::string& path, const std::string& bytes, mode_t mode, NewFileMode how) {
  const std::string temp = path + std::string(kTemporaryFileSuffix);
  if (Status written = write_and_sync(temp, bytes, mode, how); !written) {
    ::unlink(temp.c_str());
    return written;
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    // ENOENT: removed between our write and our rename, by a second writer of PATH making its own (whose
    // file must stay), or with its directory.
    if (err == ENOENT) {
      return Status::from_errno(err, "rename " + temp +
                                         " (removed meanwhile: perhaps another process writes " + path +
                                         " at the same time; write it from one process at a time)");
    }
    ::unlink(temp.c_str());
    return Status::from_errno(err, "rename " + temp);
  }
  // The new file is in place; a directory that cannot be synced (some file systems refuse fsync on a
  // directory) only weakens the crash guarantee, so only a real I/O error fails the call.
  const int dir = ::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    const int err = ::fsync(dir) != 0 ? errno : 0;
    ::close(dir);
    if (err == EIO) return Status::from_errno(err, "sync the directory of " + path);
  }
  return Status::ok();
}

}  // namespace nbdsnap
