// SPDX-License-Identifier: BSD-3-Clause
// extent_clone.cpp — FICLONERANGE and the per-area decision between sharing extents and copying (see the
// design notes in the header).
#include "extent_clone.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace nbdsnap {

namespace {

std::atomic<ExtentCloneHook> clone_hook{nullptr};

bool aligned(uint64_t value, uint64_t block) {
  return block <= 1 || value % block == 0;
}

}  // namespace

Status parse_reflink_mode(const std::string& text, const std::string& what, ReflinkMode& out) {
  if (text == "auto") {
    out = ReflinkMode::automatic;
  } else if (text == "off") {
    out = ReflinkMode::off;
  } else {
    return {Errc::invalid_argument, what + " '" + text +
                                        "' is not a reflink mode: give auto (share extents where the file "
                                        "system can, the default) or off (always copy)"};
  }
  return Status::ok();
}

const char* reflink_mode_name(ReflinkMode mode) {
  return mode == ReflinkMode::off ? "off" : "auto";
}

int clone_file_range(int src_fd, uint64_t src_offset, int dst_fd, uint64_t dst_offset, uint64_t len) {
  if (ExtentCloneHook hook = clone_hook.load()) return hook(src_fd, src_offset, dst_fd, dst_offset, len);
  struct file_clone_range range {};
  range.src_fd = src_fd;
  range.src_offset = src_offset;
  range.src_length = len;
  range.dest_offset = dst_offset;
  for (;;) {
    if (::ioctl(dst_fd, FICLONERANGE, &range) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

int punch_file_range(int fd, uint64_t offset, uint64_t len) {
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) == 0) {
    return 0;
  }
  return errno;
}

int empty_file(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno;
  if (::ftruncate(fd, 0) != 0 || ::ftruncate(fd, st.st_size) != 0) return errno;
  return 0;
}

bool clone_unsupported(int error) {
  return error == EXDEV || error == EOPNOTSUPP || error == ENOTTY || error == EINVAL || error == EBADF;
}

void set_extent_clone_hook(ExtentCloneHook hook) {
  clone_hook.store(hook);
}

ExtentSharing::ExtentSharing(ReflinkMode mode, std::string snapshot_name, std::string origin_name,
                             std::function<void(const std::string&)> log_info)
    : mode_(mode),
      snapshot_name_(std::move(snapshot_name)),
      origin_name_(std::move(origin_name)),
      log_info_(std::move(log_info)) {}

bool ExtentSharing::may_clone(const SharableFile* origin, uint32_t area) {
  const char* reason = nullptr;
  if (mode_ == ReflinkMode::off) {
    reason = "reflink is off";
  } else if (origin == nullptr) {
    reason = "the origin is not a regular file of this process (a block device, or a plugin's export)";
  }
  MutexLock lock(mutex_);
  if (reason == nullptr) {
    const auto it = decisions_.find(area);
    return it == decisions_.end() || it->second != Decision::copy;
  }
  if (origin_reason_logged_) return false;
  origin_reason_logged_ = true;
  lock.unlock();
  log(std::string("copies chunks to difference storage (") + reason + ")");
  return false;
}

uint64_t ExtentSharing::slot_alignment(const SharableFile* origin, uint64_t chunk_size) const {
  if (mode_ == ReflinkMode::off || origin == nullptr || origin->block_size > chunk_size) return 1;
  return std::max<uint64_t>(1, origin->block_size);
}

bool ExtentSharing::decide(uint32_t area, Decision decision) {
  MutexLock lock(mutex_);
  Decision& current = decisions_[area];
  if (current == decision || current == Decision::copy) return false;
  current = decision;
  return true;
}

void ExtentSharing::log(const std::string& text) const {
  if (log_info_) log_info_("snapshot '" + snapshot_name_ + "': origin '" + origin_name_ + "' " + text);
}

ExtentSharing::Outcome ExtentSharing::preserve(const SharableFile& origin, uint64_t origin_offset,
                                               const SharableFile* storage, uint32_t area,
                                               uint64_t storage_offset, uint64_t len, Status& failure) {
  if (storage == nullptr) {
    if (decide(area, Decision::copy)) {
      log("copies chunks to difference storage area " + std::to_string(area) +
          " (it is not a regular file of this process)");
    }
    return Outcome::copy;
  }
  const uint64_t block = std::max(origin.block_size, storage->block_size);
  if (!aligned(origin_offset, block) || !aligned(storage_offset, block) || !aligned(len, block)) {
    return Outcome::copy;  // this chunk only: the pair may still share the next one
  }
  const int error = clone_file_range(origin.fd, origin_offset, storage->fd, storage_offset, len);
  if (error == 0) {
    if (decide(area, Decision::clone)) {
      log("preserves chunks in " + storage->path + " by sharing extents with " + origin.path +
          " (FICLONERANGE)");
    }
    return Outcome::cloned;
  }
  if (clone_unsupported(error)) {
    if (decide(area, Decision::copy)) {
      log("copies chunks to " + storage->path + ": " + origin.path + " cannot share extents with it (" +
          std::strerror(error) + ")");
    }
    return Outcome::copy;
  }
  failure = Status::from_errno(
      error, "copy-on-write by sharing extents of " + origin.path + " with " + storage->path + " failed");
  return Outcome::failed;
}

}  // namespace nbdsnap
