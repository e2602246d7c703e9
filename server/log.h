// log.h — nbdsnapd's log: one line per message on stderr, with a UTC time stamp and a level.
#pragma once

#include <string>

namespace nbdsnap {

enum class LogLevel { error = 0, warning = 1, info = 2, debug = 3 };

// "error", "warning", "info", "debug".
bool parse_log_level(const std::string& text, LogLevel& out);
void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
// Thread-safe; lines from several threads never interleave.
void log_message(LogLevel level, const std::string& message);

inline void log_error(const std::string& message) { log_message(LogLevel::error, message); }
inline void log_warning(const std::string& message) { log_message(LogLevel::warning, message); }
inline void log_info(const std::string& message) { log_message(LogLevel::info, message); }
inline void log_debug(const std::string& message) {
  if (log_enabled(LogLevel::debug)) log_message(LogLevel::debug, message);
}

}  // namespace nbdsnap
