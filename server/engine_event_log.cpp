// SPDX-License-Identifier: BSD-3-Clause
// engine_event_log.cpp — the thread that logs the engine's events (see engine_event_log.h).
#include "engine_event_log.h"

#include <system_error>

#include "cbt_store.h"

namespace nbdsnap {

namespace {

// A fresh origin (no CBT state file at all) starts its first generation: nothing was lost, so it is news, not
// a warning. The reason names the load result (core/engine.cpp attach_origin).
bool first_generation(const Event& event) {
  const std::string suffix = std::string(": ") + cbt_load_result_name(CbtLoadResult::missing);
  return event.reason.size() >= suffix.size() &&
         event.reason.compare(event.reason.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string with_reason(const std::string& text, const std::string& reason) {
  return reason.empty() ? text : text + ": " + reason;
}

}  // namespace

EventLogLine describe_event(const Event& event) {
  const std::string snapshot = "snapshot " + event.snapshot;
  switch (event.type) {
    case EventType::snapshot_created:
      return {LogLevel::info, snapshot + " created for origins " + event.origin};
    case EventType::snapshot_taken:
      return {LogLevel::info, snapshot + " taken"};
    case EventType::snapshot_destroyed:
      if (event.snapshot.empty()) return {LogLevel::info, event.reason};  // leftovers of a crashed run
      return {LogLevel::info, with_reason(snapshot + " destroyed", event.reason)};
    case EventType::corrupted:
      return {LogLevel::error,
              with_reason(snapshot + " corrupted (origin " + event.origin + ")", event.reason) +
                  "; its images fail from now on, the origin is not affected"};
    case EventType::storage_appended:
      return {LogLevel::info, snapshot + ": difference storage appended, " + std::to_string(event.bytes) +
                                  " bytes (" + event.reason + ")"};
    case EventType::low_free_space:
      return {LogLevel::warning, snapshot + ": difference storage is running low; " +
                                     std::to_string(event.requested_bytes) + " more bytes would relieve it"};
    case EventType::generation_renewed:
      if (first_generation(event)) {
        return {LogLevel::info,
                "origin " + event.origin + ": first start, no CBT state yet (" + event.reason + ")"};
      }
      return {LogLevel::warning, "origin " + event.origin + ": " + event.reason +
                                     "; incremental backups must start again with a full backup"};
    case EventType::origin_attached:
      // Checkpoints dropped because checkpoints-kept was lowered (core/engine.cpp attach_origin) are news:
      // an agent's next incremental backup from one of them becomes a full one.
      if (event.reason.find("; checkpoints dropped: ") != std::string::npos) {
        return {LogLevel::info, "origin " + event.origin + " attached, " + event.reason};
      }
      return {LogLevel::debug, with_reason("event origin_attached " + event.origin, event.reason)};
    case EventType::origin_detached:
      if (!event.reason.empty()) {
        return {LogLevel::warning,
                "origin " + event.origin + " detached from " + snapshot + ": " + event.reason};
      }
      return {LogLevel::debug, "event origin_detached " + event.origin};
  }
  return {LogLevel::info, std::string("event ") + event_type_name(event.type)};
}

void EngineEventLog::start() {
  stopping_ = false;
  try {
    follower_ = std::thread([this] { follow(); });
  } catch (const std::system_error& e) {  // no thread: serving matters more than these lines
    log_error(std::string("the engine's events will not be logged: ") + e.what());
  }
}

void EngineEventLog::stop() {
  if (!follower_.joinable()) return;
  stopping_ = true;
  follower_.join();
}

void EngineEventLog::follow() {
  uint64_t seen = 0;
  for (;;) {
    const bool last_round = stopping_.load();  // after stop(): one more pass logs what came before it
    const auto events =
        events_.wait_after(seen, last_round ? std::chrono::milliseconds(0) : std::chrono::seconds(1));
    for (const Event& event : events) {
      if (event.sequence > seen + 1 && seen > 0) {
        log_warning(std::to_string(event.sequence - seen - 1) +
                    " engine events were not logged (the log moved on)");
      }
      seen = event.sequence;
      const EventLogLine line = describe_event(event);
      log_message(line.level, line.text);
    }
    if (last_round) return;
    // Once EventLog::stop() was called every wait returns at once: without this pause the follower would spin
    // until stop() here, for as long as saving state takes.
    if (events.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace nbdsnap
