// SPDX-License-Identifier: BSD-3-Clause
// restore_target.cpp — a restore's target written whole or not at all (restore_target.h).
#include "restore_target.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>

#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exit_codes.h"
#include "helper_directory.h"
#include "private_files.h"
#include "target_file.h"

namespace nbdsnap::cli {

namespace {

constexpr const char* kPartialSuffix = ".partial-restore.";

// The file a symbolic link at `path` names (the restore replaces that file, as writing through the link
// did), or `path` itself.
std::string resolved_target(const std::string& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0 || !S_ISLNK(info.st_mode)) return path;
  char resolved[PATH_MAX];
  return ::realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : path;
}

std::string directory_of_target(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

// Removes NAME.partial-restore.PID beside `path` for each PID that no longer runs (a restore killed by
// SIGKILL, or a crash): only regular files of this user.
void remove_stale_partial_files(const std::string& path) {
  const std::string prefix = std::filesystem::path(path).filename().string() + kPartialSuffix;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory_of_target(path), error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 10 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::strtol(digits.c_str(), nullptr, 10));
    if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno == EPERM) continue;
    struct stat info {};
    if (::lstat(entry.path().c_str(), &info) != 0 || !S_ISREG(info.st_mode) || info.st_uid != ::geteuid())
      continue;
    ::unlink(entry.path().c_str());
  }
}

}  // namespace

std::string partial_restore_path(const std::string& path, pid_t pid) {
  return path + kPartialSuffix + std::to_string(pid);
}

RestoreTarget::RestoreTarget(const RestoreTargetOptions& options, uint64_t size)
    : options_(options), size_(size), final_path_(resolved_target(options.path)) {
  TargetFileOptions open_options;
  open_options.command = "restore";
  open_options.block_device = true;
  open_options.create = false;
  open_options.read_directories = options_.read_directories;
  struct stat info {};
  existed_ = ::stat(final_path_.c_str(), &info) == 0;
  if (existed_) {
    // Locked (and checked) as every target is; not truncated: it keeps its bytes until the rename.
    target_fd_ = open_target_file(final_path_, open_options);
    if (::fstat(target_fd_, &info) != 0) {
      const int err = errno;
      ::close(target_fd_);
      local_io_error("restore: " + final_path_, err);
    }
    block_device_ = S_ISBLK(info.st_mode);
    owner_ = info.st_uid;
    group_ = info.st_gid;
    existing_mode_ = info.st_mode & 07777;
  }
  if (block_device_) {
    uint64_t device_size = 0;
    if (::ioctl(target_fd_, BLKGETSIZE64, &device_size) != 0 || device_size < size_) {
      ::close(target_fd_);
      usage_error("--to " + options_.path + ": the device holds " + std::to_string(device_size) +
                  " bytes, the point " + std::to_string(size_));
    }
    write_fd_ = target_fd_;
    return;
  }
  remove_stale_partial_files(final_path_);
  partial_path_ = partial_restore_path(final_path_, ::getpid());
}

RestoreTarget::~RestoreTarget() {
  if (!committed_) remove_partial();
  if (write_fd_ >= 0 && write_fd_ != target_fd_) ::close(write_fd_);
  if (target_fd_ >= 0) ::close(target_fd_);
}

const std::string& RestoreTarget::written_path() const {
  return block_device_ ? final_path_ : partial_path_;
}

void RestoreTarget::begin() {
  begun_ = true;
  if (block_device_) return;
  // Registered before it exists, so that no signal can leave it behind.
  signal_removal_ = std::make_unique<PartialFile>(partial_path_);
  ::unlink(partial_path_.c_str());  // a partial file of an earlier process with this pid
  TargetFileOptions open_options;
  open_options.command = "restore";
  open_options.mode = options_.mode_given || !existed_ ? options_.mode : existing_mode_;
  open_options.read_directories = options_.read_directories;
  write_fd_ = open_target_file(partial_path_, open_options);
  if (existed_ && ::geteuid() == 0 && ::fchown(write_fd_, owner_, group_) != 0) {
    local_io_error("restore: " + partial_path_ + ": cannot give it the owner of " + final_path_, errno);
  }
  if (::ftruncate(write_fd_, static_cast<off_t>(size_)) != 0) {
    local_io_error("restore: " + partial_path_ + ": cannot size to " + std::to_string(size_), errno);
  }
}

void RestoreTarget::commit() {
  if (block_device_) {
    if (::fdatasync(write_fd_) != 0) local_io_error(options_.path + ": sync", errno);
    committed_ = true;
    return;
  }
  if (::fsync(write_fd_) != 0) local_io_error(partial_path_ + ": sync", errno);
  if (::rename(partial_path_.c_str(), final_path_.c_str()) != 0) {
    local_io_error("cannot rename " + partial_path_ + " to " + final_path_, errno);
  }
  committed_ = true;
  signal_removal_.reset();
  sync_path(directory_of_target(final_path_));
}

std::string RestoreTarget::failure_note() const {
  if (!begun_) return "";
  if (block_device_) {
    return "; " + options_.path +
           " now holds a partial restore (its old data partly overwritten): do not use it, restore again";
  }
  return std::string("; ") +
         (existed_ ? options_.path + " is left as it was" : options_.path + " was not created") +
         " (the partial copy was removed)";
}

void RestoreTarget::remove_partial() {
  if (partial_path_.empty() || !begun_) return;
  if (write_fd_ >= 0) {
    ::close(write_fd_);
    write_fd_ = -1;
  }
  ::unlink(partial_path_.c_str());
  signal_removal_.reset();
}

}  // namespace nbdsnap::cli
