// SPDX-License-Identifier: BSD-3-Clause
// events_test.cpp — the waitable event log: sequence numbers, waiting, bounded memory, interrupt, stop.
#include "events.h"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>

#include "control_client_watch.h"

using namespace nbdsnap;
using namespace std::chrono_literals;

namespace {

Event event_of(EventType type, const std::string& snapshot) {
  Event event;
  event.type = type;
  event.snapshot = snapshot;
  return event;
}

}  // namespace

TEST_CASE("posted events get increasing sequence numbers from 1 and a time") {
  EventLog log;
  CHECK(log.last_sequence() == 0);
  CHECK(log.post(event_of(EventType::snapshot_taken, "a")) == 1);
  CHECK(log.post(event_of(EventType::snapshot_destroyed, "a")) == 2);
  CHECK(log.last_sequence() == 2);
  const auto events = log.wait_after(0, 0ms);
  REQUIRE(events.size() == 2);
  CHECK(events[0].sequence == 1);
  CHECK(events[0].type == EventType::snapshot_taken);
  CHECK(events[0].snapshot == "a");
  CHECK(events[1].sequence == 2);
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  CHECK(events[0].time_unix_ms > now_ms - 60000);
  CHECK(events[0].time_unix_ms <= now_ms + 1000);
}

TEST_CASE("wait after returns only newer events") {
  EventLog log;
  for (int i = 0; i < 5; ++i) log.post(event_of(EventType::storage_appended, std::to_string(i)));
  const auto events = log.wait_after(3, 0ms);
  REQUIRE(events.size() == 2);
  CHECK(events[0].sequence == 4);
  CHECK(events[0].snapshot == "3");
  CHECK(events[1].sequence == 5);
  CHECK(log.wait_after(5, 0ms).empty());
}

TEST_CASE("wait after times out empty when nothing is posted") {
  EventLog log;
  const auto start = std::chrono::steady_clock::now();
  CHECK(log.wait_after(0, 50ms).empty());
  CHECK(std::chrono::steady_clock::now() - start >= 45ms);
}

TEST_CASE("a waiter wakes when an event is posted from another thread") {
  EventLog log;
  std::thread poster([&log] {
    std::this_thread::sleep_for(20ms);
    Event event = event_of(EventType::low_free_space, "s");
    event.requested_bytes = 1234;
    log.post(event);
  });
  const auto start = std::chrono::steady_clock::now();
  const auto events = log.wait_after(0, 10s);
  poster.join();
  REQUIRE(events.size() == 1);
  CHECK(events[0].type == EventType::low_free_space);
  CHECK(events[0].requested_bytes == 1234);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("the log keeps only the most recent events up to its capacity") {
  EventLog log(4);
  for (int i = 0; i < 10; ++i) log.post(event_of(EventType::corrupted, std::to_string(i)));
  CHECK(log.last_sequence() == 10);
  const auto events = log.wait_after(0, 0ms);
  REQUIRE(events.size() == 4);
  CHECK(events.front().sequence == 7);
  CHECK(events.back().sequence == 10);
}

TEST_CASE("interrupt wakes a waiter before its timeout") {
  EventLog log;
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    (void)log.wait_after(0, 30s);
    returned = true;
  });
  std::this_thread::sleep_for(20ms);
  const auto start = std::chrono::steady_clock::now();
  // The waiter may not be waiting yet when interrupt is called; interrupt again until it returns.
  while (!returned && std::chrono::steady_clock::now() - start < 5s) {
    log.interrupt();
    std::this_thread::sleep_for(5ms);
  }
  waiter.join();
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("stop wakes a waiter and every later wait returns at once, with the events it asks for") {
  EventLog log;
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    (void)log.wait_after(0, 30s);
    returned = true;
  });
  std::this_thread::sleep_for(20ms);
  const auto start = std::chrono::steady_clock::now();
  log.stop();  // once: unlike interrupt(), stopping cannot be missed by a waiter that is not waiting yet
  waiter.join();
  CHECK(returned);
  CHECK(std::chrono::steady_clock::now() - start < 5s);

  // A wait that begins after the stop (an events-wait arriving late in a shutdown) does not wait.
  log.post(event_of(EventType::snapshot_taken, "late"));
  const auto later = std::chrono::steady_clock::now();
  CHECK(log.wait_after(1, 30s).empty());
  const auto events = log.wait_after(0, 30s);
  REQUIRE(events.size() == 1);
  CHECK(events.front().snapshot == "late");
  CHECK(std::chrono::steady_clock::now() - later < 5s);
}

TEST_CASE("several waiters following the log each see every event") {
  EventLog log;
  constexpr int kEvents = 50;
  std::atomic<int> seen_total{0};
  std::vector<std::thread> followers;
  for (int f = 0; f < 3; ++f) {
    followers.emplace_back([&] {
      uint64_t after = 0;
      int seen = 0;
      const auto deadline = std::chrono::steady_clock::now() + 10s;
      while (seen < kEvents && std::chrono::steady_clock::now() < deadline) {
        for (const Event& event : log.wait_after(after, 100ms)) {
          CHECK(event.sequence == after + 1);
          after = event.sequence;
          ++seen;
        }
      }
      seen_total += seen;
    });
  }
  for (int i = 0; i < kEvents; ++i) log.post(event_of(EventType::snapshot_taken, "s"));
  for (auto& follower : followers) follower.join();
  CHECK(seen_total == 3 * kEvents);
}

TEST_CASE("a wait whose caller gives up ends within about a second, not at its timeout") {
  EventLog log(16);
  std::atomic<bool> gone{false};
  std::thread hang_up([&gone] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    gone = true;
  });
  const auto started = std::chrono::steady_clock::now();
  const auto events = log.wait_after(0, std::chrono::hours(1), [&gone] { return gone.load(); });
  hang_up.join();
  CHECK(events.empty());
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(30));  // not the hour
}

TEST_CASE("a control client watch answers for its thread only, innermost first") {
  CHECK_FALSE(ControlClientWatch::client_gone());
  {
    const ControlClientWatch outer([] { return true; });
    CHECK(ControlClientWatch::client_gone());
    {
      const ControlClientWatch inner([] { return false; });
      CHECK_FALSE(ControlClientWatch::client_gone());
    }
    CHECK(ControlClientWatch::client_gone());
    bool other_thread = true;
    std::thread([&other_thread] { other_thread = ControlClientWatch::client_gone(); }).join();
    CHECK_FALSE(other_thread);
  }
  CHECK_FALSE(ControlClientWatch::client_gone());
}

TEST_CASE("event type names are the protocol's names") {
  CHECK(std::string(event_type_name(EventType::low_free_space)) == "low_free_space");
  CHECK(std::string(event_type_name(EventType::corrupted)) == "corrupted");
  CHECK(std::string(event_type_name(EventType::storage_appended)) == "storage_appended");
  CHECK(std::string(event_type_name(EventType::snapshot_taken)) == "snapshot_taken");
  CHECK(std::string(event_type_name(EventType::snapshot_destroyed)) == "snapshot_destroyed");
  CHECK(std::string(event_type_name(EventType::origin_attached)) == "origin_attached");
  CHECK(std::string(event_type_name(EventType::origin_detached)) == "origin_detached");
  CHECK(std::string(event_type_name(EventType::generation_renewed)) == "generation_renewed");
  CHECK(std::string(event_type_name(EventType::snapshot_created)) == "snapshot_created");
}
