// SPDX-License-Identifier: BSD-3-Clause
// log.cpp — the stderr logger (see log.h).
#include "log.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "mutex.h"

namespace nbdsnap {

namespace {
std::atomic<int> g_level{int(LogLevel::info)};
std::atomic<bool> g_journal{false};  // the journal keeps its own time stamps and reads the priority prefix
Mutex g_mutex;                       // keeps lines whole; a leaf lock
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

void log_message(LogLevel level, const std::string& raw_message) {
  if (!log_enabled(level)) return;
  const std::string message = log_safe_text(raw_message);
  if (g_journal.load()) {
    MutexLock lock(g_mutex);
    std::fprintf(stderr, "%s%s: %s\n", journal_priority_prefix(level), log_level_name(level),
                 message.c_str());
    std::fflush(stderr);
    return;
  }
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const int millis =
      int(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  MutexLock lock(g_mutex);
  std::fprintf(stderr, "%s.%03dZ nbdsnapd %s: %s\n", stamp, millis, log_level_name(level), message.c_str());
  std::fflush(stderr);
}

}  // namespace nbdsnap
