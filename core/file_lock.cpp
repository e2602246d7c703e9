// SPDX-License-Identifier: BSD-3-Clause
// file_lock.cpp — OFD locks in QEMU's byte layout and the /proc scan that names lock holders (see
// file_lock.h).
#include "file_lock.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <sstream>

namespace nbdsnap {

namespace {

// QEMU's lock bytes (block/file-posix.c): 100+P "uses permission P", 200+P "forbids permission P to others".
constexpr off_t kUsesRead = 100;
constexpr off_t kUsesWrite = 101;
constexpr off_t kUsesResize = 103;
constexpr off_t kForbidsWrite = 201;
constexpr off_t kForbidsResize = 203;

struct LockRange {
  off_t start;
  off_t length;  // 0: to the end of the file and beyond
};

// F_OFD_SETLK of one range, no waiting. Returns 0 or the errno.
int set_lock(int fd, short type, LockRange range) {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = range.start;
  lock.l_len = range.length;
  return ::fcntl(fd, F_OFD_SETLK, &lock) == 0 ? 0 : errno;
}

// Whether another open file holds a lock that would conflict with a write lock on `range`; errno on failure.
int test_for_any_lock(int fd, LockRange range, bool& locked) {
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = range.start;
  lock.l_len = range.length;
  if (::fcntl(fd, F_OFD_GETLK, &lock) != 0) return errno;
  locked = lock.l_type != F_UNLCK;
  return 0;
}

// The text of a small /proc file (up to 64 KiB), empty when it cannot be read. With open() and read(), not
// a std::ifstream: another process's files come and go while we look (an fd closed between readdir and read,
// a process that exited), and libstdc++'s filebuf reports such a read error by throwing, internally caught,
// an exception that crashes the filter in nbdkit under an LD_PRELOADed ASan runtime, whose __cxa_throw
// interceptor cannot reach the libstdc++ nbdkit loaded after it (seen in CI: filter-file-dir-links).
std::string read_proc_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string text;
  char buffer[4096];
  while (text.size() < (64u << 10)) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

std::string process_command(pid_t pid) {
  std::string command = read_proc_file("/proc/" + std::to_string(pid) + "/comm");
  if (const size_t end = command.find('\n'); end != std::string::npos) command.resize(end);
  return command.empty() ? "unknown command" : command;
}

// One "lock:" line of /proc/PID/fdinfo/FD, e.g. "lock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:10952848 0 EOF"
// (fs/locks.c lock_get_status: kind, mandatory or advisory, type, pid, MAJOR:MINOR:INODE with the device in
// hex, first byte, last byte or EOF). Lines of waiters ("->") and of flock/lease locks are not ours to match.
bool lock_line_conflicts(const std::string& line, dev_t dev, ino_t ino, LockRange range, FileLockMode mode) {
  std::istringstream fields(line.substr(line.find(':') + 1));
  std::string id, kind, advisory, type, pid, file, first, last;
  if (!(fields >> id >> kind)) return false;
  if (kind != "OFDLCK" && kind != "POSIX") return false;
  if (!(fields >> advisory >> type >> pid >> file >> first >> last)) return false;
  unsigned major_number = 0, minor_number = 0;
  unsigned long long inode = 0;
  if (std::sscanf(file.c_str(), "%x:%x:%llu", &major_number, &minor_number, &inode) != 3) return false;
  if (makedev(major_number, minor_number) != dev || inode != static_cast<unsigned long long>(ino))
    return false;
  if (mode == FileLockMode::shared_read && type != "WRITE") return false;
  const unsigned long long lock_first = std::strtoull(first.c_str(), nullptr, 10);
  const bool to_end = last == "EOF";
  const unsigned long long lock_last = to_end ? 0 : std::strtoull(last.c_str(), nullptr, 10);
  const auto want_first = static_cast<unsigned long long>(range.start);
  const bool want_to_end = range.length == 0;
  const unsigned long long want_last = want_first + static_cast<unsigned long long>(range.length) - 1;
  return (want_to_end || lock_first <= want_last) && (to_end || want_first <= lock_last);
}

bool process_holds_lock(pid_t pid, dev_t dev, ino_t ino, LockRange range, FileLockMode mode) {
  const std::string fdinfo = "/proc/" + std::to_string(pid) + "/fdinfo";
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(fdinfo.c_str()), ::closedir);
  if (!dir) return false;  // gone, or not ours to read
  while (const dirent* entry = ::readdir(dir.get())) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::istringstream in(read_proc_file(fdinfo + "/" + entry->d_name));
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("lock:", 0) == 0 && lock_line_conflicts(line, dev, ino, range, mode)) return true;
    }
  }
  return false;
}

std::string describe(const std::vector<LockHolder>& holders) {
  std::string text;
  for (const LockHolder& holder : holders) {
    if (!text.empty()) text += "; ";
    text += holder.command + ", pid " + std::to_string(holder.pid);
  }
  return text;
}

// The refusal of a lock on `range`: already_exists when this process holds the conflicting lock, else busy
// naming the holders that were found. holder_found: whether the scan found any.
Status refusal(int fd, const std::string& path, LockRange range, FileLockMode mode, const std::string& what,
               const std::string& consequence, bool& holder_found) {
  struct stat st {};
  std::vector<LockHolder> holders;
  if (::fstat(fd, &st) == 0)
    holders = find_lock_holders(st.st_dev, st.st_ino, range.start, range.length, mode);
  holder_found = !holders.empty();
  const pid_t self = ::getpid();
  if (std::any_of(holders.begin(), holders.end(), [&](const LockHolder& h) { return h.pid == self; })) {
    return {Errc::already_exists,
            path + " is already open in this process, as an origin or difference storage " +
                "(perhaps under another name or path)"};
  }
  const std::string who =
      holders.empty() ? "a process not found in /proc (another user's or another container's; lslocks may "
                        "name it)"
                      : describe(holders);
  return {Errc::busy, path + " is " + what + " another process (" + who + "): " + consequence +
                          "; stop that process, or choose another file"};
}

Status lock_exclusive(int fd, const std::string& path, bool& holder_found) {
  const LockRange whole{0, 0};
  const int err = set_lock(fd, F_WRLCK, whole);
  if (err == EAGAIN || err == EACCES) {
    return refusal(fd, path, whole, FileLockMode::exclusive, "locked by", "nbdsnap must be its only user",
                   holder_found);
  }
  if (err != 0) return Status::from_errno(err, "lock " + path);
  return Status::ok();
}

Status lock_shared_read(int fd, const std::string& path, bool& holder_found) {
  for (const off_t byte : {kUsesRead, kForbidsWrite, kForbidsResize}) {
    const LockRange range{byte, 1};
    const int err = set_lock(fd, F_RDLCK, range);
    if (err == EAGAIN || err == EACCES) {
      return refusal(fd, path, range, FileLockMode::shared_read, "locked for writing by",
                     "a read-only origin must not change behind its snapshots", holder_found);
    }
    if (err != 0) return Status::from_errno(err, "lock " + path);
  }
  for (const off_t byte : {kUsesWrite, kUsesResize}) {
    const LockRange range{byte, 1};
    bool locked = false;
    if (const int err = test_for_any_lock(fd, range, locked); err != 0)
      return Status::from_errno(err, "lock " + path);
    if (locked) {
      return refusal(fd, path, range, FileLockMode::exclusive, "open for writing by",
                     "a read-only origin must not change behind its snapshots", holder_found);
    }
  }
  return Status::ok();
}

// A refused lock whose holder the /proc scan does not find is tried again: the holder may have let go (closed
// the file, exited) between the refusal and the scan, and the user would be told of "a process not found in
// /proc" holding a file that is free (attack13 F6). Bounded: a holder that is really hidden (another PID
// namespace) is named as such after this many refusals, each a scan of /proc (milliseconds each).
constexpr int kLockAttempts = 10;

}  // namespace

Status lock_file(int fd, const std::string& path, FileLockMode mode) {
  for (int attempt = 1;; ++attempt) {
    bool holder_found = true;
    Status s = mode == FileLockMode::exclusive ? lock_exclusive(fd, path, holder_found)
                                               : lock_shared_read(fd, path, holder_found);
    if (s || s.code() != Errc::busy || holder_found || attempt == kLockAttempts) return s;
  }
}

std::vector<LockHolder> find_lock_holders(dev_t dev, ino_t ino, off_t start, off_t length,
                                          FileLockMode mode) {
  std::vector<pid_t> pids;
  {
    std::unique_ptr<DIR, int (*)(DIR*)> proc(::opendir("/proc"), ::closedir);
    if (!proc) return {};
    while (const dirent* entry = ::readdir(proc.get())) {
      char* end = nullptr;
      const long pid = std::strtol(entry->d_name, &end, 10);
      if (pid > 0 && *end == '\0') pids.push_back(static_cast<pid_t>(pid));
    }
  }
  std::sort(pids.begin(), pids.end());
  std::vector<LockHolder> holders;
  for (const pid_t pid : pids) {
    if (process_holds_lock(pid, dev, ino, {start, length}, mode))
      holders.push_back({pid, process_command(pid)});
  }
  return holders;
}

}  // namespace nbdsnap
