// SPDX-License-Identifier: BSD-3-Clause
// opened_files.cpp — /proc/self/fd, read with opendir, each entry's file told by stat through the link; the
// origin's lock on a descriptor of our own.
#include "opened_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <utility>

#include "file_device.h"
#include "file_lock.h"

namespace nbdsnap {

namespace {

// Calls visit(fd) for every open descriptor of the file `identity`, from /proc/self/fd. Each descriptor's
// file is told by the kernel's cached attributes (identity_of_descriptor): a stat through /proc/self/fd/N
// asked the file's own file system, and one descriptor on a stalled one (difference storage on a hung NFS
// server) held every open of every export.
template <typename Visit>
void for_each_descriptor_of(const std::string& identity, Visit visit) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return;
  const int own = ::dirfd(dir);
  while (const dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == own) continue;  // ".", "..", the listing itself
    std::string file;  // the open file's, whatever its path has become since
    if (FileDevice::identity_of_descriptor(static_cast<int>(fd), file) && file == identity)
      visit(static_cast<int>(fd));
  }
  ::closedir(dir);
}

// 0: the two descriptors of this process refer to one open file; 1 or 2: to two; -1: cannot tell.
int compare_open_files(int a, int b) {
  const pid_t self = ::getpid();
  const long order = ::syscall(SYS_kcmp, self, self, KCMP_FILE, a, b);
  return order < 0 ? -1 : static_cast<int>(order);
}

}  // namespace

OpenedFileCheck::OpenedFileCheck(std::string identity) : identity_(std::move(identity)) {
  for_each_descriptor_of(identity_, [this](int fd) {
    const int kept = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (kept >= 0) {
      kept_.push_back(kept);
      numbers_.push_back(fd);
    }
  });
}

OpenedFileCheck::~OpenedFileCheck() {
  for (int fd : kept_) ::close(fd);
}

bool OpenedFileCheck::opened() const {
  bool found = false;
  for_each_descriptor_of(identity_, [&](int fd) {
    if (found || std::find(kept_.begin(), kept_.end(), fd) != kept_.end()) return;  // our own dups
    bool old = false;
    for (size_t i = 0; i < kept_.size() && !old; ++i) {
      const int same = compare_open_files(fd, kept_[i]);
      old = same == 0 || (same < 0 && fd == numbers_[i]);  // without kcmp: a number open before is old
    }
    found = !old;
  });
  return found;
}

OriginFileLock::OriginFileLock(OriginFileLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), backing_(std::move(other.backing_)) {}

OriginFileLock& OriginFileLock::operator=(OriginFileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    backing_ = std::move(other.backing_);
  }
  return *this;
}

OriginFileLock::~OriginFileLock() {
  if (fd_ >= 0) ::close(fd_);
}

Status OriginFileLock::acquire(const std::string& path, const std::string& identity, bool read_only,
                               OriginFileLock& out) {
  // O_NONBLOCK: a FIFO put in the directory must not hang the open; the lock needs write access to be
  // exclusive (F_WRLCK), as nbdsnapd's read-write origins are opened. A read-write block device is claimed
  // with O_EXCL as nbdsnapd claims it: the plugin's own open does not, so a mounted device (whose file system
  // writes it) or one under device mapper would otherwise be served and tracked while others write it too.
  Status error;
  const int fd = FileDevice::open_node(path, (read_only ? O_RDONLY : O_RDWR) | O_NOCTTY | O_NONBLOCK, error);
  if (fd < 0) return error;
  OriginFileLock opened;
  opened.fd_ = fd;
  std::string now;
  if (!FileDevice::identity_of_descriptor(fd, now) || now != identity)
    return {Errc::bad_state, path +
                                 " is another file than the one the plugin opened (renamed meanwhile?); "
                                 "connect again"};
  const FileLockMode mode = read_only ? FileLockMode::shared_read : FileLockMode::exclusive;
  if (Status s = lock_file(fd, path, mode); !s) return s;
  // A loop device: the file behind it too, so that a server on that file and this one refuse each other.
  if (Status s = LoopBackingLock::acquire(fd, path, mode, opened.backing_); !s) return s;
  out = std::move(opened);
  return Status::ok();
}

PluginOpenTurn::Holder::~Holder() {
  if (turn_ == nullptr) return;
  MutexLock lock(turn_->mutex_);
  turn_->taken_ = false;
  turn_->holder_.clear();
  turn_->free_.notify_all();
}

Status PluginOpenTurn::take(const std::string& export_name, Holder& out) {
  MutexLock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + limit_;
  while (taken_) {
    if (!free_.wait_until(mutex_, deadline) && taken_) {
      return {Errc::busy, "export '" + export_name + "': the plugin's open of export '" + holder_ +
                              "' has not returned for " + std::to_string(limit_.count() / 1000) +
                              " s (its file system may not be answering), and opens of files are checked "
                              "one at a time; connect again later"};
    }
  }
  taken_ = true;
  holder_ = export_name;
  out.turn_ = this;
  return Status::ok();
}

}  // namespace nbdsnap
