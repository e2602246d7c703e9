// SPDX-License-Identifier: BSD-3-Clause
// storage_watcher_test.cpp — which events make watch-storage append storage, how much, and where.
#include <doctest/doctest.h>

#include "storage_watcher.h"

using namespace nbdsnap::cli;

namespace {
nlohmann::json event(const std::string& type, const std::string& snapshot, uint64_t requested = 0) {
  return {{"sequence", 1},
          {"type", type},
          {"snapshot", snapshot},
          {"requested_bytes", requested},
          {"reason", "r"}};
}
}  // namespace

TEST_CASE("low_free_space_of_the_watched_snapshot_appends_one_step") {
  StorageWatcher watcher("s1", "/diff/s1", 64 << 20);
  WatchAction action = watcher.on_event(event("low_free_space", "s1", 1 << 20));
  CHECK(action.kind == WatchAction::append_storage);
  CHECK(action.size == 64 << 20);
}

TEST_CASE("events_of_other_snapshots_are_ignored") {
  StorageWatcher watcher("s1", "/diff/s1", 64 << 20);
  CHECK(watcher.on_event(event("low_free_space", "s2")).kind == WatchAction::none);
  CHECK(watcher.on_event(event("snapshot_destroyed", "s2")).kind == WatchAction::none);
}

TEST_CASE("low_free_space_events_before_our_append_shows_up_are_stale") {
  StorageWatcher watcher("s1", "/diff/s1", 64 << 20);
  CHECK(watcher.on_event(event("low_free_space", "s1")).kind == WatchAction::append_storage);
  CHECK(watcher.on_event(event("low_free_space", "s1")).kind == WatchAction::none);
  CHECK(watcher.on_event(event("storage_appended", "s1")).kind == WatchAction::none);
  CHECK(watcher.on_event(event("low_free_space", "s1")).kind == WatchAction::append_storage);
  watcher.append_failed();
  CHECK(watcher.on_event(event("low_free_space", "s1")).kind == WatchAction::append_storage);
}

TEST_CASE("a_request_larger_than_a_step_gets_whole_steps") {
  StorageWatcher watcher("s1", "/diff/s1", 64 << 20);
  CHECK(watcher.append_size(0) == 64 << 20);
  CHECK(watcher.append_size(64 << 20) == 64 << 20);
  CHECK(watcher.append_size((64 << 20) + 1) == 128 << 20);
}

TEST_CASE("destroy_stops_and_corruption_is_reported") {
  StorageWatcher watcher("s1", "/diff/s1", 1 << 20);
  CHECK(watcher.on_event(event("corrupted", "s1")).kind == WatchAction::report_corruption);
  CHECK(watcher.on_event(event("snapshot_destroyed", "s1")).kind == WatchAction::stop);
}

TEST_CASE("next_storage_path_skips_names_in_use_or_on_disk") {
  StorageWatcher watcher("s1", "/diff/s1", 1 << 20);
  auto none = [](const std::string&) { return false; };
  CHECK(watcher.next_storage_path({}, none) == "/diff/s1.1");
  CHECK(watcher.next_storage_path({"/diff/s1.1"}, none) == "/diff/s1.2");
  auto two_exists = [](const std::string& path) { return path == "/diff/s1.2"; };
  CHECK(watcher.next_storage_path({"/diff/s1.1"}, two_exists) == "/diff/s1.3");
}
