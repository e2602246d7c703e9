// SPDX-License-Identifier: BSD-3-Clause
// private_files.cpp — modes, atomic writes and syncs of the files nbdsnap writes (private_files.h).
#include "private_files.h"

#include <cerrno>
#include <filesystem>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durable_file.h"
#include "exit_codes.h"
#include "object_file_name.h"

namespace nbdsnap::cli {

namespace {

[[noreturn]] void io_failure(const std::string& path, const std::string& what, int err) {
  local_io_error(what.empty() ? path : path + ": " + what, err);
}

// Closes a descriptor at the end of a scope.
struct FileCloser {
  int fd;
  ~FileCloser() {
    if (fd >= 0) ::close(fd);
  }
};

std::string parent_of(const std::string& path) {
  std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? std::string(".") : parent;
}

}  // namespace

mode_t parse_file_mode(const std::string& text) {
  size_t used = 0;
  unsigned long value = 0;
  try {
    value = std::stoul(text, &used, 8);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || value > 0777) {
    usage_error("--mode '" + text + "': give octal permission bits, at most 0777 (e.g. 600 or 0640)");
  }
  return static_cast<mode_t>(value);
}

mode_t directory_mode_for(mode_t file_mode) {
  mode_t mode = file_mode | S_IRWXU;
  if ((file_mode & S_IRGRP) != 0) mode |= S_IXGRP;
  if ((file_mode & S_IROTH) != 0) mode |= S_IXOTH;
  return mode;
}

int open_private_file(const std::string& path, mode_t mode, bool truncate, bool force_mode) {
  // O_EXCL first: a file this call creates gets `mode`; an existing one keeps its own unless forced.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  bool created = fd >= 0;
  if (fd < 0 && errno == EEXIST) fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (truncate ? O_TRUNC : 0));
  if (fd < 0) io_failure(path, "", errno);
  if ((created || force_mode) && ::fchmod(fd, mode) != 0) {
    const int err = errno;
    ::close(fd);
    io_failure(path, "cannot set its mode", err);
  }
  return fd;
}

void create_private_file(const std::string& path, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) io_failure(path, "cannot create", errno);
  FileCloser closer{fd};
  if (::fchmod(fd, mode) != 0) io_failure(path, "cannot set its mode", errno);
}

// Refuses a path that exists as something other than a regular file (a device node, a directory, a FIFO, a
// symbolic link): renaming over it would replace /dev/null or /dev/stdout with a file of ours.
// advice: what the user should do when `path` is something else.
void require_regular_or_absent(const std::string& path, const char* what, const char* advice) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;  // absent (or unreadable: open/rename will say)
  if (S_ISREG(st.st_mode)) return;
  throw CliError(ExitCode::io_error,
                 path + ": " + what + " is not a regular file, and writing it would replace it: " + advice);
}

void write_file_atomically(const std::string& path, const std::string& text, mode_t mode) {
  const std::string temporary = path + std::string(kTemporaryFileSuffix);
  require_regular_or_absent(
      path, "the file to write",
      "give the path of a regular file (it is written as FILE.tmp, then renamed over FILE)");
  require_regular_or_absent(temporary, "the temporary file beside it",
                            "remove it (FILE is written as FILE.tmp, then renamed over FILE)");
  if (Status s = replace_file_durably(path, text, mode, NewFileMode::exactly); !s)
    throw CliError(ExitCode::io_error, s.message(), {"", to_errno(s), ""});
}

std::string read_whole_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_failure(path, "", errno);
  FileCloser closer{fd};
  std::string text;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) io_failure(path, "cannot read", errno);
    if (n == 0) return text;
    text.append(buffer, static_cast<size_t>(n));
  }
}

void make_private_directory(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) == 0) {
    if (::chmod(path.c_str(), mode) != 0) io_failure(path, "cannot set its mode", errno);
    sync_path(parent_of(path));
    return;
  }
  if (errno != EEXIST) io_failure(path, "cannot create the directory", errno);
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) io_failure(path, "", errno);
  if (!S_ISDIR(info.st_mode)) usage_error(path + " exists and is not a directory");
}

void sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_failure(path, "cannot open to sync", errno);
  FileCloser closer{fd};
  if (::fsync(fd) != 0 && errno != EINVAL) io_failure(path, "sync", errno);
}

void start_writeback(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  FileCloser closer{fd};
  ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

void remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) io_failure(path, "cannot remove", errno);
}

bool path_exists(const std::string& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0;
}

DirectoryLock::DirectoryLock(const std::string& directory, const std::string& lock_name, bool exclusive,
                             mode_t mode) {
  const std::string path = directory + "/" + lock_name;
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, mode);
  if (fd_ < 0 && errno == EACCES) fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // read-only users share
  if (fd_ < 0) io_failure(path, "cannot open the lock file", errno);
  if (::flock(fd_, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0) return;
  const int err = errno;
  ::close(fd_);
  fd_ = -1;
  if (err == EWOULDBLOCK) {
    throw CliError(ExitCode::server_error, directory +
                                               " is in use by another nbdsnap command (a backup or prune "
                                               "changes it); try again when it has finished");
  }
  io_failure(path, "cannot lock", err);
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace nbdsnap::cli
