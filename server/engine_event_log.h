// SPDX-License-Identifier: BSD-3-Clause
// engine_event_log.h — writes the engine's events to nbdsnapd's log: snapshots created, taken, corrupted and
// destroyed, storage appended, low free space, CBT generations renewed.
//
// The engine decides and records (core/events.h); logging is the front end's policy, so a thread of the
// daemon follows the event log and writes one line per event. Origin attach and detach are logged where the
// daemon does them (main.cpp, control_front_end.cpp), with the path, so their events are debug lines here.
//
// Thread-safety: start() and stop() from one thread; stop() returns once the follower has gone, after it has
// logged every event posted before stop() was called.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "events.h"
#include "log.h"

namespace nbdsnap {

class EngineEventLog {
 public:
  explicit EngineEventLog(EventLog& events) : events_(events) {}
  ~EngineEventLog() { stop(); }
  EngineEventLog(const EngineEventLog&) = delete;
  EngineEventLog& operator=(const EngineEventLog&) = delete;

  // Follows the log from its first event still kept (startup events included).
  void start();
  // Logs what is left and joins the follower: at once after EventLog::stop(), else within its next poll (1
  // s).
  void stop();

 private:
  void follow();
  EventLog& events_;
  std::thread follower_;
  std::atomic<bool> stopping_{false};
};

// The level and line an event is logged with (pure: unit-tested).
struct EventLogLine {
  LogLevel level = LogLevel::info;
  std::string text;
};
EventLogLine describe_event(const Event& event);

}  // namespace nbdsnap
