// SPDX-License-Identifier: BSD-3-Clause
// rate_limited_log.h — at most one log line per interval for events a peer can repeat at will (connections
// refused or dropped by a listener's limits), so that a flood of them costs one line, not one per connection.
// Thread-safety: report() from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "mutex.h"

namespace nbdsnap {

class RateLimitedLog {
 public:
  explicit RateLimitedLog(std::chrono::seconds interval = std::chrono::seconds(60)) : interval_(interval) {}

  // Calls warn(message) when no line went out in the last interval (adding how many were left out since the
  // last one), else only counts the event.
  void report(const std::string& message, const std::function<void(const std::string&)>& warn)
      EXCLUDES(mutex_) {
    std::string line;
    {
      MutexLock lock(mutex_);
      const auto now = std::chrono::steady_clock::now();
      if (logged_once_ && now - last_ < interval_) {
        ++left_out_;
        return;
      }
      line = message;
      if (left_out_ > 0) {
        line += " (" + std::to_string(left_out_) + " more like it since the last such line were not logged)";
      } else {
        line += " (more like it within " + std::to_string(interval_.count()) + " s are not logged)";
      }
      logged_once_ = true;
      last_ = now;
      left_out_ = 0;
    }
    if (warn) warn(line);
  }

 private:
  const std::chrono::seconds interval_;
  Mutex mutex_;  // a leaf lock
  bool logged_once_ GUARDED_BY(mutex_) = false;
  std::chrono::steady_clock::time_point last_ GUARDED_BY(mutex_);
  unsigned long left_out_ GUARDED_BY(mutex_) = 0;
};

}  // namespace nbdsnap
