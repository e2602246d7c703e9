// SPDX-License-Identifier: BSD-3-Clause
// refusal_log.h — the log lines of a listener's refused peers (failed TLS handshakes, peers without a role,
// the over-limit), which an unauthenticated peer can cause at will: a flood of them costs a few lines a
// minute, not a line per connection.
//
// Each refusal has a kind (a short phrase, "closed before the TLS handshake ended"). The first of a kind is
// logged at once in full, with the peer and what to check; after it, refusals of that kind are counted, and
// when a minute (the interval) has passed since the window opened one line sums up the window:
//   "remote control: refused 15180 connections in the last 60 s: 15180 closed before the TLS handshake
//    ended, last from 127.0.0.1:40112"
// A kind summed up this way stays counted (one summary a minute under a steady flood); a kind quiet for a
// whole interval is logged in full again at its next refusal. Summaries go out from report() once due, and
// from flush_due(), which the owner calls when next_due() comes (a flood that stops is still summed up), and
// from flush() at shutdown. Thread-safety: every method from any thread; `warn` is called outside the lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mutex.h"

namespace nbdsnap {

class RefusalLog {
 public:
  using Clock = std::chrono::steady_clock;
  using Warn = std::function<void(const std::string&)>;

  // prefix: what the lines begin with ("remote control: "); what: the noun counted ("connections").
  RefusalLog(std::string prefix, std::string what, std::chrono::seconds interval = std::chrono::seconds(60))
      : prefix_(std::move(prefix)), what_(std::move(what)), interval_(interval) {}
  RefusalLog(const RefusalLog&) = delete;
  RefusalLog& operator=(const RefusalLog&) = delete;

  void set_warn(Warn warn) EXCLUDES(mutex_);
  // One refusal of `kind` from peer (HOST:PORT): `message` (without the prefix) is logged in full when the
  // kind is quiet, else counted.
  void report(const std::string& kind, const std::string& peer, const std::string& message,
              Clock::time_point now = Clock::now()) EXCLUDES(mutex_);
  // When the open window's summary is due; none without an open window.
  std::optional<Clock::time_point> next_due() const EXCLUDES(mutex_);
  // Writes the summary when it is due.
  void flush_due(Clock::time_point now = Clock::now()) EXCLUDES(mutex_);
  // Writes the summary of what is counted now, due or not (shutdown).
  void flush(Clock::time_point now = Clock::now()) EXCLUDES(mutex_);

 private:
  struct Kind {
    std::string name;
    uint64_t count = 0;                          // in the open window
    uint64_t left_out = 0;                       // ... of which not logged in full
    std::optional<Clock::time_point> last_line;  // the last full line or summary that named it
  };
  // The summary line of the open window (empty when nothing was left out), closing it.
  std::string close_window(Clock::time_point now) REQUIRES(mutex_);

  const std::string prefix_;
  const std::string what_;
  const std::chrono::seconds interval_;
  mutable Mutex mutex_;  // a leaf lock
  Warn warn_ GUARDED_BY(mutex_);
  std::vector<Kind> kinds_ GUARDED_BY(mutex_);  // few: in the order first seen
  std::optional<Clock::time_point> window_start_ GUARDED_BY(mutex_);
  std::string last_peer_ GUARDED_BY(mutex_);
};

}  // namespace nbdsnap
