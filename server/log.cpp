// log.cpp — the stderr logger (see log.h).
#include "log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "mutex.h"

namespace nbdsnap {

namespace {
std::atomic<int> g_level{int(LogLevel::info)};
Mutex g_mutex;  // keeps lines whole; a leaf lock
const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::error: return "error";
    case LogLevel::warning: return "warning";
    case LogLevel::info: return "info";
    case LogLevel::debug: return "debug";
  }
  return "?";
}
}  // namespace

bool parse_log_level(const std::string& text, LogLevel& out) {
  for (LogLevel level : {LogLevel::error, LogLevel::warning, LogLevel::info, LogLevel::debug}) {
    if (text == level_name(level)) {
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

void set_log_level(LogLevel level) { g_level = int(level); }
bool log_enabled(LogLevel level) { return int(level) <= g_level.load(); }

void log_message(LogLevel level, const std::string& message) {
  if (!log_enabled(level)) return;
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const int millis = int(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  MutexLock lock(g_mutex);
  std::fprintf(stderr, "%s.%03dZ nbdsnapd %s: %s\n", stamp, millis, level_name(level), message.c_str());
  std::fflush(stderr);
}

}  // namespace nbdsnap
