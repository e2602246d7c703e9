// SPDX-License-Identifier: BSD-3-Clause
// log.h — nbdsnapd's log: one line per message on stderr, with a UTC time stamp and a level; under systemd,
// when stderr is the journal, with the journal's priority prefix ("<6>") in place of the time stamp.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>

namespace nbdsnap {

enum class LogLevel { error = 0, warning = 1, info = 2, debug = 3 };

// "error", "warning", "info", "debug".
const char* log_level_name(LogLevel level);
bool parse_log_level(const std::string& text, LogLevel& out);
void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
// Thread-safe; lines from several threads never interleave. Never blocks on stderr for long (log.cpp): it
// waits at most 100 ms for its line to be written, then leaves it queued (up to 1 MiB of lines; beyond that
// lines are dropped, and how many is logged once stderr takes lines again).
void log_message(LogLevel level, const std::string& message);
// Waits until every line logged so far is written, at most `bound`; false if some were not (stderr stuck).
// For the end of the process: before exit or _Exit, so that the last lines are not lost.
bool log_flush(std::chrono::milliseconds bound);
// How long an exit waits for the last lines (log_flush): a stop must end even when stderr does not take them.
inline constexpr std::chrono::seconds kExitLogFlush{2};

// Looks once whether stderr is the journal (below) and formats lines for it from then on. Call at start,
// before other threads log.
void detect_journal_stderr();
// Whether JOURNAL_STREAM (systemd.exec(5): "DEVICE:INODE" of the stream systemd connected to the journal, in
// decimal) names the file stderr is: dev and ino are stderr's fstat(). False for a null or malformed value,
// so a variable inherited by a child whose stderr was redirected elsewhere does not count.
bool journal_stream_matches(const char* journal_stream, dev_t dev, ino_t ino);
// The syslog priority prefix sd-daemon(3) defines for a level: "<3>" (SD_ERR), "<4>" (SD_WARNING),
// "<6>" (SD_INFO), "<7>" (SD_DEBUG).
const char* journal_priority_prefix(LogLevel level);
// `message` with every control character (bytes below 0x20 and 0x7f) written as \xNN: log lines quote what
// clients send (export names, TLS identities), and a newline or an escape sequence in them must not forge a
// line or restyle a terminal.
std::string log_safe_text(std::string_view message);

inline void log_error(const std::string& message) {
  log_message(LogLevel::error, message);
}
inline void log_warning(const std::string& message) {
  log_message(LogLevel::warning, message);
}
inline void log_info(const std::string& message) {
  log_message(LogLevel::info, message);
}
inline void log_debug(const std::string& message) {
  if (log_enabled(LogLevel::debug)) log_message(LogLevel::debug, message);
}

}  // namespace nbdsnap
