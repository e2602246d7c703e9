// SPDX-License-Identifier: BSD-3-Clause
// log.cpp — the stderr logger (see log.h).
//
// A reader of stderr that stops (a stalled journal, a pipe or terminal whose reader paused) must never block
// a thread that logs: those serve NBD requests and control commands, and may hold engine locks. So a line is
// written directly only as far as stderr takes it without waiting: through a non-blocking open file
// description of its own (/proc/self/fd/2 opened again, for pipes and terminals; O_NONBLOCK on fd 2 itself
// would change it for every process sharing it), or send(MSG_DONTWAIT) for a socket (the journal). The first
// time stderr does not take a whole line, a writer thread starts, with the rest of that line first, and every
// later line goes through it, in order. log_message then still waits for its own line, as a direct write
// does (logs read right after an action show it), but at most kSyncWait, and not at all while the writer has
// been stuck in a write for longer. Past kQueueLimit queued bytes, lines are dropped, counted, and the count
// is logged once there is room again. (Only then is there a thread: a process whose stderr never backs up,
// such as the tests that fork, has none. A log file on a file system that stops answering still blocks:
// writes to files have no non-blocking form.)
#include "log.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

#include "mutex.h"

namespace nbdsnap {

namespace {
using Clock = std::chrono::steady_clock;

constexpr auto kSyncWait = std::chrono::milliseconds(100);
constexpr size_t kQueueLimit = size_t{1} << 20;

std::atomic<int> g_level{int(LogLevel::info)};
std::atomic<bool> g_journal{false};  // the journal keeps its own time stamps and reads the priority prefix

// How a line is written without the writer thread (chosen at the first line).
enum class DirectWrite {
  unknown,
  file,             // a regular file: write() waits only for its file system
  socket,           // send(MSG_DONTWAIT)
  own_description,  // a non-blocking description of stderr's pipe or terminal of our own (direct_fd)
  none,             // neither: every line through the writer thread
};

// The queue between the threads that log and the writer. Never destroyed: a thread may log while the
// process exits, and the writer may be blocked in write() then.
struct Writer {
  Mutex mutex;      // a leaf lock, never held across a write
  CondVar queued;   // a line was queued
  CondVar written;  // the writer finished a batch
  std::deque<std::string> lines GUARDED_BY(mutex);
  size_t queued_bytes GUARDED_BY(mutex) = 0;
  uint64_t next_seq GUARDED_BY(mutex) = 0;     // number of the next line queued
  uint64_t written_seq GUARDED_BY(mutex) = 0;  // every line numbered below is written (or failed)
  uint64_t dropped GUARDED_BY(mutex) = 0;      // lines dropped since the last note about it
  DirectWrite direct GUARDED_BY(mutex) = DirectWrite::unknown;
  int direct_fd GUARDED_BY(mutex) = -1;  // DirectWrite::own_description
  bool started GUARDED_BY(mutex) = false;
  bool no_thread GUARDED_BY(mutex) = false;  // the thread could not start: lines are written by their caller
  bool writing GUARDED_BY(mutex) = false;
  Clock::time_point writing_since GUARDED_BY(mutex);
};

// The process's writer. A child of fork() gets a fresh one (fork_child): the writer thread does not exist
// there, and the lock and condition variables may have been in use by threads that do not exist either.
Writer*& writer_slot() {
  static Writer* slot = new Writer;
  return slot;
}

Writer& writer() {
  return *writer_slot();
}

// pthread_atfork handlers: the writer's lock is held across fork() so that the child never copies a queue in
// the middle of a change; the child starts over with an empty writer (the parent writes what was queued).
void fork_prepare() NO_THREAD_SAFETY_ANALYSIS {
  writer().mutex.lock();
}
void fork_parent() NO_THREAD_SAFETY_ANALYSIS {
  writer().mutex.unlock();
}
void fork_child() {
  writer_slot() = new Writer;  // the old one stays locked and unused
}

// Writes all of `text` to stderr, waiting as long as stderr does (only the writer thread, or a caller
// without one, does this). A stderr that fails (its reader closed: EPIPE) loses the text.
void write_stderr(const std::string& text) {
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n > 0) {
      p += n;
      left -= static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {  // a non-blocking stderr someone else set up
      pollfd ready{STDERR_FILENO, POLLOUT, 0};
      (void)::poll(&ready, 1, -1);
    } else {
      return;
    }
  }
}

void write_batches() {
  Writer& w = writer();
  MutexLock lock(w.mutex);
  for (;;) {
    while (w.lines.empty()) w.queued.wait(w.mutex);
    std::string batch;
    batch.reserve(w.queued_bytes);
    for (const std::string& line : w.lines) batch += line;
    w.lines.clear();
    w.queued_bytes = 0;
    const uint64_t upto = w.next_seq;
    w.writing = true;
    w.writing_since = Clock::now();
    lock.unlock();
    write_stderr(batch);
    lock.lock();
    w.writing = false;
    w.written_seq = upto;
    w.written.notify_all();
  }
}

// Starts the writer thread once, when stderr first does not take a line at once.
void start_writer_locked(Writer& w) REQUIRES(w.mutex) {
  if (w.started) return;
  w.started = true;
  try {
    std::thread(write_batches).detach();
  } catch (const std::system_error&) {
    w.no_thread = true;
    return;
  }
  // A return from main or exit() writes what is still queued, within a bound (_Exit callers flush first).
  static std::once_flag registered;
  std::call_once(registered, [] {
    std::atexit([] { log_flush(kExitLogFlush); });
    ::pthread_atfork(fork_prepare, fork_parent, fork_child);
  });
}
}  // namespace

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::error:
      return "error";
    case LogLevel::warning:
      return "warning";
    case LogLevel::info:
      return "info";
    case LogLevel::debug:
      return "debug";
  }
  return "?";
}

bool parse_log_level(const std::string& text, LogLevel& out) {
  for (LogLevel level : {LogLevel::error, LogLevel::warning, LogLevel::info, LogLevel::debug}) {
    if (text == log_level_name(level)) {
      out = level;
      return true;
    }
  }
  if (text == "warn") {
    out = LogLevel::warning;
    return true;
  }
  return false;
}

bool journal_stream_matches(const char* journal_stream, dev_t dev, ino_t ino) {
  if (journal_stream == nullptr) return false;
  unsigned long long want_dev = 0;
  unsigned long long want_ino = 0;
  int end = 0;
  if (std::sscanf(journal_stream, "%llu:%llu%n", &want_dev, &want_ino, &end) != 2 ||
      journal_stream[end] != '\0') {
    return false;
  }
  return want_dev == static_cast<unsigned long long>(dev) && want_ino == static_cast<unsigned long long>(ino);
}

const char* journal_priority_prefix(LogLevel level) {
  switch (level) {
    case LogLevel::error:
      return "<3>";
    case LogLevel::warning:
      return "<4>";
    case LogLevel::info:
      return "<6>";
    case LogLevel::debug:
      return "<7>";
  }
  return "<6>";
}

void detect_journal_stderr() {
  struct stat st {};
  g_journal =
      ::fstat(2, &st) == 0 && journal_stream_matches(std::getenv("JOURNAL_STREAM"), st.st_dev, st.st_ino);
}

void set_log_level(LogLevel level) {
  g_level = int(level);
}
bool log_enabled(LogLevel level) {
  return int(level) <= g_level.load();
}

std::string log_safe_text(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (const char c : message) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

namespace {
std::string format_line(LogLevel level, const std::string& message) {
  if (g_journal.load())
    return std::string(journal_priority_prefix(level)) + log_level_name(level) + ": " + message + "\n";
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const int millis =
      int(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return std::string(stamp) + " nbdsnapd " + log_level_name(level) + ": " + message + "\n";
}

// Queues `line`; its number. The caller holds w.mutex and has checked there is room.
uint64_t queue_locked(Writer& w, std::string line) REQUIRES(w.mutex) {
  w.queued_bytes += line.size();
  w.lines.push_back(std::move(line));
  w.queued.notify_one();
  return w.next_seq++;
}

void choose_direct_write(Writer& w) REQUIRES(w.mutex) {
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) {
    w.direct = DirectWrite::none;
  } else if (S_ISREG(st.st_mode)) {
    w.direct = DirectWrite::file;
  } else if (S_ISSOCK(st.st_mode)) {
    w.direct = DirectWrite::socket;
  } else {
    w.direct_fd = ::open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    w.direct = w.direct_fd >= 0 ? DirectWrite::own_description : DirectWrite::none;
  }
}

// Writes as much of `line` as stderr takes without waiting; returns how many bytes that was (all of it when
// stderr failed: the line is lost then, as a write to a closed pipe loses it).
size_t write_without_waiting(Writer& w, const std::string& line) REQUIRES(w.mutex) {
  if (w.direct == DirectWrite::unknown) choose_direct_write(w);
  if (w.direct == DirectWrite::none) return 0;
  if (w.direct == DirectWrite::file) {
    write_stderr(line);
    return line.size();
  }
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n =
        w.direct == DirectWrite::socket
            ? ::send(STDERR_FILENO, line.data() + done, line.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL)
            : ::write(w.direct_fd, line.data() + done, line.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return done;
    } else {
      return line.size();
    }
  }
  return done;
}

}  // namespace

void log_message(LogLevel level, const std::string& raw_message) {
  if (!log_enabled(level)) return;
  std::string line = format_line(level, log_safe_text(raw_message));
  Writer& w = writer();
  MutexLock lock(w.mutex);
  if (!w.started) {
    const size_t done = write_without_waiting(w, line);
    if (done == line.size()) return;
    line.erase(0, done);  // the rest of it goes first through the writer
  }
  start_writer_locked(w);
  if (w.no_thread) {  // lines stay whole: written under the lock
    write_stderr(line);
    return;
  }
  if (w.queued_bytes + line.size() > kQueueLimit) {
    ++w.dropped;
    return;
  }
  if (w.dropped > 0) {
    queue_locked(w, format_line(LogLevel::warning, std::to_string(w.dropped) +
                                                       " log line(s) dropped here: stderr took none for a "
                                                       "while (its reader stopped reading?)"));
    w.dropped = 0;
  }
  const uint64_t seq = queue_locked(w, std::move(line));
  // As a direct write would, wait for the line, but not for a writer already stuck.
  const auto deadline = Clock::now() + kSyncWait;
  while (w.written_seq <= seq) {
    if (w.writing && Clock::now() - w.writing_since > kSyncWait) return;
    if (!w.written.wait_until(w.mutex, deadline)) return;
  }
}

bool log_flush(std::chrono::milliseconds bound) {
  Writer& w = writer();
  MutexLock lock(w.mutex);
  const auto deadline = Clock::now() + bound;
  while (w.written_seq < w.next_seq) {
    if (!w.written.wait_until(w.mutex, deadline)) return w.written_seq >= w.next_seq;
  }
  return true;
}

}  // namespace nbdsnap
