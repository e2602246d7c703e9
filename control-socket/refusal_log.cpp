// SPDX-License-Identifier: BSD-3-Clause
// refusal_log.cpp — counted log lines for refused peers (see refusal_log.h).
#include "refusal_log.h"

#include <algorithm>

namespace nbdsnap {

void RefusalLog::set_warn(Warn warn) {
  MutexLock lock(mutex_);
  warn_ = std::move(warn);
}

void RefusalLog::report(const std::string& kind, const std::string& peer, const std::string& message,
                        Clock::time_point now) {
  std::string summary, line;
  Warn warn;
  {
    MutexLock lock(mutex_);
    warn = warn_;
    if (window_start_ && now - *window_start_ >= interval_) summary = close_window(now);
    if (!window_start_) window_start_ = now;
    auto it = std::find_if(kinds_.begin(), kinds_.end(), [&](const Kind& k) { return k.name == kind; });
    if (it == kinds_.end()) {
      Kind added;
      added.name = kind;
      it = kinds_.insert(kinds_.end(), std::move(added));
    }
    ++it->count;
    last_peer_ = peer;
    if (!it->last_line || now - *it->last_line >= interval_) {
      it->last_line = now;
      line = prefix_ + message + " (more " + what_ + " refused like this are counted in one line a minute)";
    } else {
      ++it->left_out;
    }
  }
  if (!warn) return;
  if (!summary.empty()) warn(summary);
  if (!line.empty()) warn(line);
}

std::optional<RefusalLog::Clock::time_point> RefusalLog::next_due() const {
  MutexLock lock(mutex_);
  if (!window_start_) return std::nullopt;
  return *window_start_ + interval_;
}

void RefusalLog::flush_due(Clock::time_point now) {
  std::string summary;
  Warn warn;
  {
    MutexLock lock(mutex_);
    if (!window_start_ || now - *window_start_ < interval_) return;
    summary = close_window(now);
    warn = warn_;
  }
  if (warn && !summary.empty()) warn(summary);
}

void RefusalLog::flush(Clock::time_point now) {
  std::string summary;
  Warn warn;
  {
    MutexLock lock(mutex_);
    if (!window_start_) return;
    summary = close_window(now);
    warn = warn_;
  }
  if (warn && !summary.empty()) warn(summary);
}

std::string RefusalLog::close_window(Clock::time_point now) {
  uint64_t total = 0, left_out = 0;
  std::string counts;
  for (Kind& kind : kinds_) {
    if (kind.count == 0) continue;
    total += kind.count;
    left_out += kind.left_out;
    counts += (counts.empty() ? "" : ", ") + std::to_string(kind.count) + " " + kind.name;
    // A kind summed up stays counted: under a steady flood, one summary a minute and no full lines.
    if (kind.left_out > 0) kind.last_line = now;
    kind.count = kind.left_out = 0;
  }
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(now - *window_start_).count();
  window_start_.reset();
  if (left_out == 0) return {};  // every refusal of the window has its own line already
  return prefix_ + "refused " + std::to_string(total) + " " + what_ + " in the last " +
         std::to_string(std::max<long long>(seconds, 1)) + " s: " + counts + ", last from " + last_peer_;
}

}  // namespace nbdsnap
