// SPDX-License-Identifier: BSD-3-Clause
// target_file.cpp — the checks before a command overwrites a local file or block device (target_file.h).
#include "target_file.h"

#include <cerrno>
#include <filesystem>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exit_codes.h"
#include "file_device.h"
#include "file_lock.h"
#include "status.h"

namespace nbdsnap::cli {

namespace {

// What to do instead, for a target some server or tool is using.
constexpr const char* kInUseHint =
    ". It is in use, perhaps as an origin or difference storage of nbdsnapd or of nbdkit's nbdsnap filter: "
    "to "
    "write into an origin, go through its NBD server (--to 'nbd+unix:///ORIGIN?socket=...')";

// Closes the descriptor unless released, so each refusal below leaves nothing open (and no lock held).
class DescriptorGuard {
 public:
  explicit DescriptorGuard(int fd) : fd_(fd) {}
  ~DescriptorGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  DescriptorGuard(const DescriptorGuard&) = delete;
  DescriptorGuard& operator=(const DescriptorGuard&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

[[noreturn]] void io_failure(const TargetFileOptions& options, const std::string& path,
                             const std::string& what, int err) {
  local_io_error(options.command + ": " + path + (what.empty() ? "" : ": " + what), err);
}

[[noreturn]] void busy(const TargetFileOptions& options, const std::string& text) {
  const std::string message = options.command + ": --to " + text + kInUseHint;
  throw CliError(ExitCode::server_error, message, {"busy", EBUSY, message});
}

// Refuses a target that is an entry of a directory the command reads (compared by device and inode).
void refuse_read_file(const TargetFileOptions& options, const std::string& path, const struct stat& target) {
  for (const std::string& directory : options.read_directories) {
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
      struct stat info {};
      if (::stat(entry.path().c_str(), &info) != 0) continue;
      if (info.st_dev == target.st_dev && info.st_ino == target.st_ino) {
        usage_error(options.command + ": --to " + path + " is " + entry.path().string() +
                    ", a file of the backup chain being read (" + directory +
                    "): writing it would destroy the chain; give a file outside the chain");
      }
    }
  }
}

// Opens a regular file without truncating it, or a block device O_EXCL; creates an absent file if asked to.
int open_unlocked(const std::string& path, const TargetFileOptions& options, bool& created) {
  int fd = -1;
  if (options.create) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, options.mode);
    created = fd >= 0;
    if (fd >= 0 || errno != EEXIST) {
      if (fd < 0) io_failure(options, path, "", errno);
      return fd;
    }
  }
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 && S_ISBLK(info.st_mode)) {
    if (!options.block_device) usage_error(options.command + ": --to " + path + " is not a regular file");
    // Claimed as nbdsnapd and the filter claim their origins (O_EXCL), refused naming the holder.
    Status error;
    fd = FileDevice::open_node(path, O_RDWR, error);
    if (fd < 0 && error.code() == Errc::busy) busy(options, error.message());
    if (fd < 0)
      throw CliError(ExitCode::io_error, options.command + ": " + error.message(), {"", to_errno(error), ""});
    return fd;
  } else {
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  }
  if (fd < 0) io_failure(options, path, "", errno);
  return fd;
}

}  // namespace

int open_target_file(const std::string& path, const TargetFileOptions& options) {
  bool created = false;
  DescriptorGuard guard(open_unlocked(path, options, created));
  const int descriptor = guard.get();
  struct stat info {};
  if (::fstat(descriptor, &info) != 0) io_failure(options, path, "", errno);
  const bool block = S_ISBLK(info.st_mode);
  if (!S_ISREG(info.st_mode) && !(block && options.block_device)) {
    usage_error(options.command + ": --to " + path + " is neither a regular file" +
                (options.block_device ? " nor a block device" : ""));
  }
  refuse_read_file(options, path, info);
  if (Status locked = lock_file(descriptor, path, FileLockMode::exclusive); !locked) {
    if (locked.code() == Errc::busy || locked.code() == Errc::already_exists) busy(options, locked.message());
    throw CliError(ExitCode::io_error, options.command + ": " + locked.message(), {"", to_errno(locked), ""});
  }
  // Only now, with the lock held, may the file change.
  if ((created || options.force_mode) && !block && ::fchmod(descriptor, options.mode) != 0)
    io_failure(options, path, "cannot set its mode", errno);
  if (options.truncate && !created && !block && ::ftruncate(descriptor, 0) != 0)
    io_failure(options, path, "cannot truncate", errno);
  return guard.release();
}

}  // namespace nbdsnap::cli
