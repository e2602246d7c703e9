// SPDX-License-Identifier: BSD-3-Clause
// helper_directory.cpp — private temporary directories of helper processes: creation, the flock that says the
// owner lives, the signal handler that removes them, and the removal of stale ones (helper_directory.h).
#include "helper_directory.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exit_codes.h"

namespace nbdsnap::cli {

namespace {

constexpr int kSlots = 8;
constexpr size_t kPathMax = 4096;
constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
// A directory of the older kind (no pid in its name) is stale only after this long: its owner cannot be
// known.
constexpr time_t kStaleAge = 60;
// How long the handler gives the helper to end after SIGTERM (qemu-nbd flushes the image) before SIGKILL.
constexpr int kHelperStopMs = 5000;

// The signal handler's view of the live directories. A slot is free, being filled or emptied by its owner
// (busy), live, or taken by the handler: the owner and the handler each claim a live slot with a
// compare-and-swap, so exactly one of them removes the directory.
enum SlotState : int { kFree, kBusy, kLive, kTaken };
struct Slot {
  std::atomic<int> state{kFree};
  std::atomic<int> fd{-1};
  std::atomic<pid_t> helper{0};
  char path[kPathMax] = {};
};
Slot g_slots[kSlots];
// The one PartialFile: free, busy (being registered or dropped), live, or taken by the handler.
struct PartialSlot {
  std::atomic<int> state{kFree};
  char path[kPathMax] = {};
};
PartialSlot g_partial;
std::atomic<bool> g_dying{false};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<pid_t>::is_always_lock_free,
              "the signal handler needs lock-free atomics");

void sleep_ms(long ms) {
  timespec pause{0, ms * 1000000L};
  while (::nanosleep(&pause, &pause) != 0 && errno == EINTR) {
  }
}

// Async-signal-safe: SIGTERM, a bounded wait, SIGKILL.
void stop_helper(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  int status = 0;
  for (int waited = 0; waited < kHelperStopMs; waited += 10) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid || (done < 0 && errno == ECHILD)) return;  // ended (or reaped by its owner meanwhile)
    sleep_ms(10);
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

// Async-signal-safe: unlinks every entry of the directory open at fd (helpers make files, not directories).
void empty_directory(int fd) {
  alignas(dirent64) char buffer[4096];
  ::lseek(fd, 0, SEEK_SET);
  for (;;) {
    const ssize_t n = ::getdents64(fd, buffer, sizeof(buffer));
    if (n <= 0) return;
    for (ssize_t at = 0; at < n;) {
      const auto* entry = reinterpret_cast<const dirent64*>(buffer + at);
      const char* name = entry->d_name;
      if (!(name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))) {
        if (::unlinkat(fd, name, 0) != 0 && errno == EISDIR) ::unlinkat(fd, name, AT_REMOVEDIR);
      }
      at += entry->d_reclen;
    }
  }
}

void on_signal(int signal_number) {
  const int saved_errno = errno;
  if (!g_dying.exchange(true)) {
    for (Slot& slot : g_slots) {
      int expected = kLive;
      if (!slot.state.compare_exchange_strong(expected, kTaken)) continue;
      stop_helper(slot.helper.load());
      const int fd = slot.fd.load();
      if (fd >= 0) empty_directory(fd);
      ::rmdir(slot.path);
    }
    int expected = kLive;
    if (g_partial.state.compare_exchange_strong(expected, kTaken)) ::unlink(g_partial.path);
    // Ends the command as the signal would have: blocked while this handler runs, delivered when it returns.
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    ::sigaction(signal_number, &default_action, nullptr);
    ::raise(signal_number);
  }
  // Another thread's handler is already cleaning up and ends the process.
  errno = saved_errno;
}

void install_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    for (int signal_number : kSignals) sigaddset(&action.sa_mask, signal_number);
    for (int signal_number : kSignals) {
      struct sigaction current {};
      if (::sigaction(signal_number, nullptr, &current) != 0) continue;
      // A signal ignored (nohup, a background job's SIGINT) or handled by someone else is left as it is.
      if ((current.sa_flags & SA_SIGINFO) == 0 && current.sa_handler == SIG_DFL) {
        ::sigaction(signal_number, &action, nullptr);
      }
    }
  });
}

int claim_slot(const std::string& path, int fd) {
  if (path.size() >= kPathMax) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expected = kFree;
    if (!g_slots[i].state.compare_exchange_strong(expected, kBusy)) continue;
    std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
    g_slots[i].fd.store(fd);
    g_slots[i].helper.store(0);
    g_slots[i].state.store(kLive);
    return i;
  }
  return -1;
}

std::string temporary_base() {
  const char* base = std::getenv("TMPDIR");
  return base != nullptr && *base != '\0' ? base : "/tmp";
}

// Whether a socket in the directory accepts connections (a helper of an older nbdsnap still serving).
bool holds_live_socket(const std::filesystem::path& directory) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
    if (!entry.is_socket(error)) continue;
    const std::string path = entry.path().string();
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof(address.sun_path)) continue;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    const bool accepted = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
    ::close(fd);
    if (accepted) return true;
  }
  return false;
}

// The owner pid in NAME = PREFIX PID "." XXXXXX; 0 for a name of the older kind (PREFIX XXXXXX).
pid_t owner_in_name(const std::string& name, const std::string& prefix) {
  const std::string rest = name.substr(prefix.size());
  const size_t dot = rest.find('.');
  if (dot == std::string::npos || dot == 0 || dot > 10) return 0;
  pid_t pid = 0;
  for (size_t i = 0; i < dot; ++i) {
    if (rest[i] < '0' || rest[i] > '9') return 0;
    pid = pid * 10 + (rest[i] - '0');
  }
  return pid;
}

bool process_exists(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

// Removes `path` if it is stale (helper_directory.h); true if it did.
bool remove_if_stale(const std::filesystem::path& path, pid_t owner) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode) || info.st_uid != ::geteuid()) return false;
  if (owner == ::getpid()) return false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  bool stale = ::flock(fd, LOCK_EX | LOCK_NB) == 0;  // else its owner lives and holds it
  const bool old = std::time(nullptr) - info.st_mtime > kStaleAge;
  if (stale && owner > 0) stale = !process_exists(owner) || old;  // an owner between mkdtemp and flock
  if (stale && owner == 0) stale = old && !holds_live_socket(path);
  if (stale) {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  ::close(fd);
  return stale;
}

}  // namespace

PartialFile::PartialFile(const std::string& path) {
  install_handler();
  int expected = kFree;
  if (path.size() >= kPathMax || !g_partial.state.compare_exchange_strong(expected, kBusy)) {
    throw CliError(ExitCode::io_error, "cannot register " + path + " for removal on a signal");
  }
  std::memcpy(g_partial.path, path.c_str(), path.size() + 1);
  g_partial.state.store(kLive);
}

PartialFile::~PartialFile() {
  int expected = kLive;
  if (!g_partial.state.compare_exchange_strong(expected, kFree)) {
    // The signal handler has it and ends the process once done: wait for that (bounded), as remove() does.
    for (int waited = 0; waited < 2 * kHelperStopMs + 5000; waited += 10) sleep_ms(10);
  }
}

int remove_stale_helper_directories(const std::string& kind) {
  const std::string prefix = "nbdsnap-" + kind + ".";
  int removed = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(temporary_base(), error)) {
    const std::string name = entry.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    if (remove_if_stale(entry.path(), owner_in_name(name, prefix))) ++removed;
  }
  return removed;
}

HelperDirectory::HelperDirectory(const std::string& kind) {
  install_handler();
  // Every kind: a killed full backup leaves a qemu-img directory, and the next backup may be incremental.
  for (const char* known : {"qemu-nbd", "qemu-img"}) {
    if (kind != known) remove_stale_helper_directories(known);
  }
  remove_stale_helper_directories(kind);
  std::string pattern = temporary_base() + "/nbdsnap-" + kind + "." + std::to_string(::getpid()) + ".XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    local_io_error("cannot create a temporary directory for " + kind + " in " + temporary_base(), errno);
  }
  path_ = pattern;
  fd_ = ::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  std::string problem;
  if (fd_ < 0 || ::flock(fd_, LOCK_EX) != 0) {
    problem = std::strerror(errno);
  } else if ((slot_ = claim_slot(path_, fd_)) < 0) {
    problem = "more than " + std::to_string(kSlots) + " at once in this process";
  }
  if (!problem.empty()) {
    remove();
    throw CliError(ExitCode::io_error, "cannot set up the temporary directory " + pattern + ": " + problem);
  }
}

HelperDirectory::~HelperDirectory() {
  remove();
}

void HelperDirectory::set_helper(pid_t pid) {
  if (slot_ >= 0) g_slots[slot_].helper.store(pid);
}

void HelperDirectory::remove() {
  if (path_.empty()) return;
  if (slot_ >= 0) {
    int expected = kLive;
    if (!g_slots[slot_].state.compare_exchange_strong(expected, kBusy)) {
      // The signal handler has it and ends the process once done: wait for that (bounded) rather than return
      // into code that would report an error and exit with another status.
      for (int waited = 0; waited < 2 * kHelperStopMs + 5000; waited += 10) sleep_ms(10);
      return;
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
  if (fd_ >= 0) ::close(fd_);
  if (slot_ >= 0) {
    g_slots[slot_].fd.store(-1);
    g_slots[slot_].helper.store(0);
    g_slots[slot_].state.store(kFree);
  }
  fd_ = -1;
  slot_ = -1;
  path_.clear();
}

}  // namespace nbdsnap::cli
