// SPDX-License-Identifier: BSD-3-Clause
// libnbdsnap_live_test.cpp — libnbdsnap against a running server (nbdsnapd, or nbdkit with the nbdsnap
// filter): every kind of call once, as an agent makes them, with the server's answers checked: version and
// origins, CBT (mark dirty, map, reset), a snapshot's life cycle with its storage, the checkpoint its take
// records, the event stream and the event callback (filter, stop by callback, by stop token, by timeout, the
// callback calling the client), refusals as values, calls from several threads, and close().
//
// Usage: libnbdsnap_live_test CONTROL-SOCKET ORIGIN STORAGE-DIR FRONT-END   (FRONT-END:
// nbdsnapd|nbdkit-filter) Prints "ok: ..." per step; exits 1 at the first failure.
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "nbdsnap/client.h"

using namespace nbdsnap::client;
using namespace std::chrono_literals;

namespace {

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "FAIL: %s\n", message.c_str());
  std::exit(1);
}

void pass(const std::string& message) {
  std::printf("ok: %s\n", message.c_str());
}

// The value of a call that must succeed.
template <typename T>
T must(Result<T> result, const std::string& what) {
  if (!result) fail(what + ": " + result.error().describe());
  return std::move(result).value();
}
void must(const Result<void>& result, const std::string& what) {
  if (!result) fail(what + ": " + result.error().describe());
}

void check(bool condition, const std::string& what) {
  if (!condition) fail(what);
}

// Client::watch_events(): the filter, its four ways to end, the callback using the client, another thread's
// call while a watch waits.
void check_event_callback(Client& client, const std::string& origin, const std::string& storage_dir) {
  WatchOptions options;
  options.after = must(client.wait_events(0), "events-wait").last_sequence;
  options.poll = 100ms;
  options.timeout = 10s;
  SnapshotSpec spec;
  spec.name = "watch1";
  spec.origins = {origin};
  spec.storage = {{storage_dir + "/watch1.diff", 8u << 20, false}};
  must(client.snapshot_create(spec), "snapshot-create watch1");
  must(client.snapshot_take("watch1"), "snapshot-take watch1");

  // Only watch1's snapshot_taken passes the filter (its snapshot_created does not); the callback asks the
  // same client about it, then stops the watch.
  EventFilter taken{{"snapshot_taken"}, "watch1", ""};
  std::vector<std::string> seen;
  std::string state_seen;
  WatchEnd end = must(client.watch_events(
                          taken,
                          [&](const Event& event) {
                            seen.push_back(event.type + " " + event.snapshot);
                            Result<Snapshot> info = client.snapshot_info(event.snapshot);
                            state_seen = info ? info->state : info.error().describe();
                            return WatchVerdict::stop;
                          },
                          {}, options),
                      "watch_events");
  check(end.reason == WatchEnd::Reason::callback_stopped && end.delivered == 1 && seen.size() == 1 &&
            seen[0] == "snapshot_taken watch1" && end.position > options.after,
        "watch_events with a filter: " + std::to_string(seen.size()) + " events passed on");
  check(state_seen == "taken", "the callback's own call of the client: " + state_seen);
  pass(
      "watch_events: only the filtered event passed on, the callback called the client and stopped the "
      "watch");

  // Nothing matches: a stop request from another thread ends the watch within the poll; a call from a third
  // thread meanwhile is served between the watch's waits.
  options.after = end.position;
  std::stop_source stopper;
  std::atomic<bool> served{false};
  std::thread other([&] {
    std::this_thread::sleep_for(200ms);
    served = client.origin_info(origin).ok();
    stopper.request_stop();
  });
  const auto start = std::chrono::steady_clock::now();
  EventFilter nothing{{"corrupted"}, "no-such-snapshot", ""};
  int calls = 0;
  end = must(client.watch_events(
                 nothing,
                 [&](const Event&) {
                   ++calls;
                   return WatchVerdict::keep_watching;
                 },
                 stopper.get_token(), options),
             "watch_events until stopped");
  const auto took = std::chrono::steady_clock::now() - start;
  other.join();
  check(end.reason == WatchEnd::Reason::stop_requested && calls == 0 && end.delivered == 0 && took < 3s,
        "watch_events stopped from another thread");
  check(served, "another thread's call during a watch");
  pass("watch_events: a stop token from another thread ends it, another thread's call is served meanwhile");

  // The events of destroying watch1 come after position: a watch for a type that never comes times out.
  must(client.snapshot_destroy("watch1"), "snapshot-destroy watch1");
  options.timeout = 300ms;
  int destroyed = 0;
  EventFilter any_destroy{{"snapshot_destroyed"}, "", ""};
  end = must(client.watch_events(
                 any_destroy,
                 [&](const Event&) {
                   ++destroyed;
                   return WatchVerdict::keep_watching;
                 },
                 {}, options),
             "watch_events with a timeout");
  check(end.reason == WatchEnd::Reason::timed_out && destroyed == 1 && end.delivered == 1,
        "watch_events timed out after " + std::to_string(destroyed) + " snapshot_destroyed events");
  Result<WatchEnd> no_callback = client.watch_events({}, nullptr, {}, options);
  check(!no_callback && no_callback.error().code == kInvalidRequest, "watch_events without a callback");
  pass("watch_events: keeps watching to its timeout; no callback is invalid_request");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) fail("usage: libnbdsnap_live_test CONTROL-SOCKET ORIGIN STORAGE-DIR FRONT-END");
  const std::string control = argv[1], origin = argv[2], storage_dir = argv[3], front_end = argv[4];
  Options options;
  options.timeout = 10s;
  Client client = must(Client::connect(control, options), "connect");

  ServerVersion version = must(client.version(), "version");
  check(version.front_end == front_end && version.protocol == 1, "version: " + version.front_end);
  std::vector<Origin> origins = must(client.origins(), "origins");
  bool listed = false;
  for (const Origin& candidate : origins) listed |= candidate.name == origin;
  check(listed, "origins does not list " + origin);
  Origin info = must(client.origin_info(origin), "origin-info");
  check(info.size > 0 && !info.generation.empty() && info.snapshot.empty(), "origin-info fields");
  pass("version (" + version.front_end + " " + version.version + "), origins, origin-info");

  must(client.cbt_mark_dirty(origin, {{65536, 4096}}), "cbt-mark-dirty");
  CbtQuery query;
  query.origin = origin;
  CbtMap map = must(client.cbt_changed_ranges(query), "cbt-map");
  bool marked = false;
  for (const ByteRange& range : map.ranges) marked |= range.offset <= 65536 && range.end() >= 65536 + 4096;
  check(marked && map.generation == info.generation, "cbt-map lacks the range marked dirty");
  CbtInfo cbt = must(client.cbt_info(origin), "cbt-info");
  check(cbt.block_size > 0 && cbt.device_size == info.size, "cbt-info fields");
  pass("cbt-mark-dirty, cbt-map, cbt-info");

  Result<Snapshot> missing = client.snapshot_info("no-such-snapshot");
  check(!missing && missing.error().from_server() && missing.error().code == "not_found" &&
            missing.error().errno_value == ENOENT && client.state() == State::connected,
        "a refusal is a value with the server's code and errno, the client stays connected");
  pass("refusal: " + missing.error().describe());

  EventStream events(client, must(client.wait_events(0), "events-wait").last_sequence);
  SnapshotSpec spec;
  spec.name = "lib1";
  spec.origins = {origin};
  spec.storage = {{storage_dir + "/lib1.diff", 16u << 20, false}};
  Snapshot created = must(client.snapshot_create(spec), "snapshot-create");
  check(created.state == "created" && created.images.empty(), "snapshot-create state " + created.state);
  Snapshot taken = must(client.snapshot_take("lib1"), "snapshot-take");
  check(taken.state == "taken" && taken.images.size() == 1 && taken.images[0].export_name == origin + "@lib1",
        "snapshot-take images");
  Snapshot grown =
      must(client.snapshot_append_storage("lib1", {storage_dir + "/lib1b.diff", 8u << 20, false}),
           "snapshot-append-storage");
  check(grown.storage_total == (24u << 20) && grown.storage.size() == 2, "storage after append");
  std::vector<Snapshot> list = must(client.snapshots(), "snapshot-list");
  check(list.size() == 1 && list[0].name == "lib1", "snapshot-list");
  CheckpointList checkpoints = must(client.checkpoints(origin), "checkpoints");
  check(!checkpoints.checkpoints.empty() && checkpoints.checkpoints.back().name == "lib1",
        "the take's checkpoint");
  check(checkpoints.checkpoints.back().taken_unix_ms > 0, "the checkpoint's take time");
  pass("snapshot create, take, append-storage, list; checkpoint lib1 recorded with its take time");

  // Paging, as the server does it: one range per page, followed to the end by the library; the raw map the
  // same.
  must(client.cbt_mark_dirty(origin, {{0, 4096}, {1u << 20, 4096}, {2u << 20, 4096}}), "cbt-mark-dirty");
  CbtQuery paged;
  paged.origin = origin;
  paged.max_entries = 1;
  CbtMap page = must(client.cbt_map(paged), "cbt-map page");
  check(page.ranges.size() == 1 && page.more && page.next_offset > 0, "cbt-map max_ranges 1 gives one page");
  CbtMap whole = must(client.cbt_changed_ranges(paged), "cbt-map all pages");
  check(whole.ranges.size() >= 3 && !whole.more, "cbt_changed_ranges follows more to the end");
  CbtRawMap raw = must(client.cbt_whole_raw_map(paged), "cbt-raw-map all pages");
  uint64_t blocks = 0;
  for (const CbtRun& run : raw.runs) blocks += run.blocks;
  check(!raw.more && raw.offset == 0 && raw.length >= info.size && raw.length < info.size + raw.block_size &&
            blocks * raw.block_size == raw.length,
        "cbt_whole_raw_map covers the device: " + std::to_string(raw.length));
  pass("cbt-map and cbt-raw-map paged by one entry, joined by the library");

  must(client.checkpoint_delete(origin, "lib1"), "checkpoint-delete");
  CbtQuery gone;
  gone.origin = origin;
  gone.since = "lib1";
  Result<CbtMap> after_delete = client.cbt_map(gone);
  check(!after_delete && after_delete.error().code == "checkpoint_gone",
        "a deleted checkpoint is checkpoint_gone");
  pass("checkpoint-delete; cbt-map since it: " + after_delete.error().describe());

  bool seen_take = false;
  for (int i = 0; i < 20 && !seen_take; ++i) {
    Result<std::optional<Event>> event = events.next(1s);
    if (!event) fail("event stream: " + event.error().describe());
    if (!*event) break;
    seen_take = (*event)->type == "snapshot_taken" && (*event)->snapshot == "lib1";
  }
  check(seen_take, "the event stream has no snapshot_taken for lib1");
  const auto start = std::chrono::steady_clock::now();
  const uint64_t newest = must(client.wait_events(0), "events-wait").last_sequence;
  EventBatch none = must(client.wait_events(newest, 300ms), "events-wait with a wait");
  check(none.events.empty() && std::chrono::steady_clock::now() - start < 5s, "an idle events-wait");
  pass("event stream: snapshot_taken of lib1; an idle wait returns after its wait");

  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        Result<Origin> got = client.origin_info(origin);
        if (!got || got->snapshot != "lib1") ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  check(failures == 0, std::to_string(failures.load()) + " calls from threads failed");
  pass("200 calls from 4 threads on one client");

  must(client.snapshot_destroy("lib1"), "snapshot-destroy");
  check_event_callback(client, origin, storage_dir);  // an origin is in one snapshot at a time
  Result<Origin> attach = client.origin_attach("lib-extra", storage_dir + "/extra.img");
  if (front_end == "nbdkit-filter") {
    check(!attach && attach.error().code == "not_supported", "origin-attach on the filter");
  } else {
    check(attach.ok(), "origin-attach: " + (attach ? std::string() : attach.error().describe()));
    must(client.origin_detach("lib-extra"), "origin-detach");
  }
  std::string generation = must(client.cbt_reset(origin), "cbt-reset");
  check(!generation.empty() && generation != info.generation, "cbt-reset gives a new generation");
  client.close();
  check(client.state() == State::closed && client.version().error().code == kNotConnected, "close");
  pass("destroy, origin attach/detach (or not_supported), cbt-reset, close");
  return 0;
}
