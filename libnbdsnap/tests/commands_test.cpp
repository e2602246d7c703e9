// SPDX-License-Identifier: BSD-3-Clause
// commands_test.cpp — typed calls: what each sends and how its reply is decoded, CBT paging joined (and
// refused across a generation change), the event stream and its callback form, and calls from many threads on
// one Client.
#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <stop_token>
#include <thread>

#include <nlohmann/json.hpp>

#include "fake_server.h"
#include "nbdsnap/client.h"

using namespace nbdsnap::client;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A server that records the requests and answers from a table of command -> reply (the "ok" added).
class ScriptedServer {
 public:
  explicit ScriptedServer(std::function<json(const json&)> answer)
      : answer_(std::move(answer)), server_(fake::replying([this](const std::string& line) {
          json request = json::parse(line);
          {
            std::scoped_lock lock(mutex_);
            requests_.push_back(request);
          }
          json reply = answer_(request);
          if (!reply.contains("ok")) reply["ok"] = true;
          return reply.dump();
        })) {}
  const std::string& path() const { return server_.path(); }
  json last_request() {
    std::scoped_lock lock(mutex_);
    return requests_.back();
  }

 private:
  std::function<json(const json&)> answer_;
  std::mutex mutex_;
  std::vector<json> requests_;
  fake::Server server_;
};

// The pages a scripted cbt-map or cbt-raw-map server answers, set by the test between calls: `first` for
// offset 0 (or every request when `following` is null), `following` for the others.
class PageScript {
 public:
  void set(const json& first, const json& following = nullptr) {
    std::scoped_lock lock(mutex_);
    first_ = first;
    following_ = following;
  }
  json answer(const json& request) {
    std::scoped_lock lock(mutex_);
    return request.value("offset", 0) == 0 || following_.is_null() ? first_ : following_;
  }

 private:
  std::mutex mutex_;
  json first_;
  json following_;
};

Client connected_with_defaults(const std::string& path) {
  Result<Client> client = Client::connect(path);
  REQUIRE(client.ok());
  return std::move(client).value();
}

}  // namespace

TEST_CASE("origins_snapshots_and_cbt_info_are_decoded_field_by_field") {
  ScriptedServer server([](const json& request) -> json {
    const std::string command = request["command"];
    if (command == "origins") {
      return {{"origins",
               {{{"name", "disk"},
                 {"size", 1048576},
                 {"read_only", false},
                 {"generation", "g1"},
                 {"change_number", 7},
                 {"tracking_block_size", 65536},
                 {"chunk_size", 65536},
                 {"snapshot", "s1"},
                 {"clients", 2},
                 {"uri", "nbd+unix:///disk?socket=/x"},
                 {"a_field_of_the_future", true}}}}};
    }
    if (command == "snapshot-take") {
      return {{"snapshot",
               {{"name", "s1"},
                {"state", "taken"},
                {"origins", {"disk"}},
                {"images", {{{"origin", "disk"}, {"export", "disk@s1"}, {"uri", "u"}}}},
                {"storage", {{{"path", "/d"}, {"size", 4096}, {"created", true}}}},
                {"storage_used", 0},
                {"taken_unix_ms", 1700000000000},
                {"take_hold_us", 420},
                {"take_drain_us", 400}}}};
    }
    if (command == "cbt-info")
      return {{"cbt", {{"generation", "g1"}, {"checkpoints", {{"b", 5}, {"a", 3}}}}}};
    return json::object();
  });
  Client client = connected_with_defaults(server.path());
  Result<std::vector<Origin>> origins = client.origins();
  REQUIRE(origins.ok());
  REQUIRE(origins->size() == 1);
  const Origin& disk = origins->front();
  CHECK(disk.name == "disk");
  CHECK(disk.size == 1048576);
  CHECK(disk.generation == "g1");
  CHECK(disk.change_number == 7);
  CHECK(disk.snapshot == "s1");
  CHECK(disk.clients == 2);

  Result<Snapshot> taken = client.snapshot_take("s1");
  REQUIRE(taken.ok());
  CHECK(server.last_request() == json({{"command", "snapshot-take"}, {"name", "s1"}}));
  CHECK(taken->state == "taken");
  REQUIRE(taken->images.size() == 1);
  CHECK(taken->images[0].export_name == "disk@s1");
  REQUIRE(taken->storage.size() == 1);
  CHECK(taken->storage[0].created);
  CHECK(taken->taken_unix_ms == 1700000000000);
  CHECK(taken->take_hold_us == 420);
  CHECK(taken->take_drain_us == 400);

  Result<CbtInfo> cbt = client.cbt_info("disk", "s1");
  REQUIRE(cbt.ok());
  CHECK(server.last_request() == json({{"command", "cbt-info"}, {"origin", "disk"}, {"snapshot", "s1"}}));
  REQUIRE(cbt->checkpoints.size() == 2);
  CHECK(cbt->checkpoints[0].name == "a");  // oldest (smallest number) first
  CHECK(cbt->checkpoints[1].number == 5);
}

TEST_CASE("requests_carry_exactly_the_arguments_of_the_protocol") {
  // Replies of the protocol's shape: only the requests are looked at here.
  ScriptedServer server([](const json& request) {
    if (request["command"] == "snapshot-create") return json{{"snapshot", {{"name", "s"}}}};
    if (request["command"] == "cbt-map") return json{{"ranges", json::array()}};
    return json::object();
  });
  Client client = connected_with_defaults(server.path());
  SnapshotSpec spec;
  spec.name = "s";
  spec.origins = {"a", "b"};
  spec.storage = {{"/var/tmp/s.diff", 1 << 20, false}};
  spec.limit = 4096;
  REQUIRE(client.snapshot_create(spec).ok());
  CHECK(server.last_request() == json({{"command", "snapshot-create"},
                                       {"name", "s"},
                                       {"origins", {"a", "b"}},
                                       {"writable", false},
                                       {"limit", 4096},
                                       {"storage", {{{"path", "/var/tmp/s.diff"}, {"size", 1 << 20}}}}}));
  REQUIRE(client.cbt_mark_dirty("a", {{0, 4096}, {65536, 512}}).ok());
  CHECK(server.last_request()["ranges"] ==
        json({{{"offset", 0}, {"length", 4096}}, {{"offset", 65536}, {"length", 512}}}));
  REQUIRE(client.origin_detach("a", true).ok());
  CHECK(server.last_request() == json({{"command", "origin-detach"}, {"name", "a"}, {"force", true}}));
  CbtQuery query;
  query.origin = "a";
  query.since = "s0";
  query.length = 8192;
  REQUIRE(client.cbt_map(query).ok());
  CHECK(server.last_request() ==
        json({{"command", "cbt-map"}, {"origin", "a"}, {"since", "s0"}, {"length", 8192}}));
}

TEST_CASE("changed_ranges_follow_the_pages_and_refuse_a_generation_change_between_them") {
  std::atomic<bool> renew{false};
  ScriptedServer server([&](const json& request) -> json {
    const uint64_t offset = request.value("offset", 0);
    const std::string generation = renew && offset > 0 ? "g2" : "g1";
    if (offset == 0) {
      return {{"generation", generation},
              {"ranges", {{{"offset", 0}, {"length", 4096}}}},
              {"more", true},
              {"next_offset", 65536}};
    }
    return {{"generation", generation},
            {"ranges", {{{"offset", 65536}, {"length", 4096}}}},
            {"more", false},
            {"next_offset", 1 << 20}};
  });
  Client client = connected_with_defaults(server.path());
  CbtQuery query;
  query.origin = "disk";
  Result<CbtMap> all = client.cbt_changed_ranges(query);
  REQUIRE(all.ok());
  CHECK(all->ranges == std::vector<ByteRange>{{0, 4096}, {65536, 4096}});
  CHECK_FALSE(all->more);
  renew = true;
  Result<CbtMap> torn = client.cbt_changed_ranges(query);
  REQUIRE_FALSE(torn.ok());
  CHECK(torn.error().code == kGenerationChanged);
  CHECK(client.state() == State::connected);
}

TEST_CASE("the_whole_raw_map_joins_runs_of_every_page_and_a_page_that_does_not_move_on_is_refused") {
  std::atomic<bool> stuck{false};
  ScriptedServer server([&](const json& request) -> json {
    const uint64_t offset = request.value("offset", 0);
    if (offset == 0) {
      return {{"generation", "g1"},
              {"block_size", 65536},
              {"offset", 0},
              {"length", 65536},
              {"runs", {{0, 1}}},
              {"more", true},
              {"next_offset", stuck ? 0 : 65536}};
    }
    return {{"generation", "g1"},
            {"block_size", 65536},
            {"offset", offset},
            {"length", 65536},
            {"runs", {{7, 1}}},
            {"more", false},
            {"next_offset", offset + 65536}};
  });
  Client client = connected_with_defaults(server.path());
  CbtQuery query;
  query.origin = "disk";
  Result<CbtRawMap> whole = client.cbt_whole_raw_map(query);
  REQUIRE(whole.ok());
  REQUIRE(whole->runs.size() == 2);
  CHECK(whole->runs[1].number == 7);
  CHECK(whole->length == 131072);
  CHECK_FALSE(whole->more);
  // The generic call keeps every field of the reply, as the CLI's --json needs.
  Result<std::string> text = client.call_all_pages(R"({"command":"cbt-raw-map","origin":"disk"})");
  REQUIRE(text.ok());
  CHECK(json::parse(*text)["runs"] == json({{0, 1}, {7, 1}}));
  CHECK(client.call_all_pages(R"({"command":"origins"})").error().code == kInvalidRequest);
  stuck = true;
  Result<CbtRawMap> looping = client.cbt_whole_raw_map(query);
  REQUIRE_FALSE(looping.ok());
  CHECK(looping.error().code == kProtocolError);
  CHECK(client.state() == State::connected);
}

TEST_CASE("an_event_stream_returns_events_one_by_one_and_asks_for_more_after_the_last") {
  ScriptedServer server([](const json& request) -> json {
    const uint64_t after = request["after"];
    json events = json::array();
    for (uint64_t sequence = after + 1; sequence <= std::min<uint64_t>(after + 2, 3); ++sequence) {
      events.push_back({{"sequence", sequence}, {"type", "snapshot_taken"}, {"snapshot", "s"}});
    }
    return {{"events", events}, {"last_sequence", 3}};
  });
  Client client = connected_with_defaults(server.path());
  EventStream stream(client);
  std::vector<uint64_t> seen;
  for (int i = 0; i < 4; ++i) {
    Result<std::optional<Event>> event = stream.next(0ms);
    REQUIRE(event.ok());
    if (!*event) break;
    seen.push_back((*event)->sequence);
  }
  CHECK(seen == std::vector<uint64_t>{1, 2, 3});
  CHECK(stream.position() == 3);
  CHECK(server.last_request()["after"] == 3);
}

TEST_CASE("a_server_replaying_old_events_has_each_delivered_once_in_sequence_order") {
  // attack11: a server answering every events-wait with events 1 and 2 had them called back for ever.
  ScriptedServer server([](const json& request) -> json {
    if (request["after"].get<uint64_t>() >= 2)
      std::this_thread::sleep_for(std::chrono::milliseconds(request["timeout_ms"].get<int64_t>()));
    return {{"events", json::array({{{"sequence", 2}, {"type", "t"}},
                                    {{"sequence", 1}, {"type", "t"}},
                                    {{"sequence", 2}, {"type", "t"}}})},
            {"last_sequence", 2}};
  });
  Client client = connected_with_defaults(server.path());
  WatchOptions options;
  options.poll = 20ms;
  options.timeout = 200ms;
  std::vector<uint64_t> seen;
  Result<WatchEnd> end = client.watch_events(
      {}, [&](const Event& event) { return seen.push_back(event.sequence), WatchVerdict::keep_watching; }, {},
      options);
  REQUIRE(end.ok());
  CHECK(seen == std::vector<uint64_t>{2});
  CHECK((end->position == 2 && end->delivered == 1));
  EventStream stream(client);
  std::vector<uint64_t> streamed;
  for (int i = 0; i < 4; ++i) {
    Result<std::optional<Event>> event = stream.next(20ms);
    REQUIRE(event.ok());
    if (*event) streamed.push_back((*event)->sequence);
  }
  CHECK(streamed == std::vector<uint64_t>{2});
}

TEST_CASE("watch_events_passes_the_filtered_events_and_ends_by_callback_by_stop_token_or_by_timeout") {
  // Five events, two per reply; with nothing new the server waits out the wait asked for, as nbdsnapd does.
  ScriptedServer server([](const json& request) -> json {
    const uint64_t after = request["after"];
    const char* types[] = {"snapshot_created", "snapshot_taken", "snapshot_taken", "low_free_space",
                           "snapshot_taken"};
    json events = json::array();
    for (uint64_t sequence = after + 1; sequence <= std::min<uint64_t>(after + 2, 5); ++sequence) {
      events.push_back(
          {{"sequence", sequence}, {"type", types[sequence - 1]}, {"snapshot", sequence < 3 ? "a" : "b"}});
    }
    if (events.empty())
      std::this_thread::sleep_for(std::chrono::milliseconds(request["timeout_ms"].get<int64_t>()));
    return {{"events", events}, {"last_sequence", 5}};
  });
  Client client = connected_with_defaults(server.path());
  WatchOptions options;
  options.poll = 20ms;
  std::vector<uint64_t> seen;
  Result<WatchEnd> end = client.watch_events(
      {{"snapshot_taken"}, "", ""},
      [&](const Event& event) {
        seen.push_back(event.sequence);
        return event.snapshot == "b" ? WatchVerdict::stop : WatchVerdict::keep_watching;
      },
      {}, options);
  REQUIRE(end.ok());
  CHECK(seen == std::vector<uint64_t>{2, 3});
  CHECK((end->reason == WatchEnd::Reason::callback_stopped && end->position == 3 && end->delivered == 2));

  // Nothing matches: a stop request from another thread ends the watch within a few polls.
  options.after = end->position;
  std::stop_source stop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(100ms);
    stop.request_stop();
  });
  const auto start = std::chrono::steady_clock::now();
  end = client.watch_events(
      {{"corrupted"}, "", ""}, [](const Event&) { return WatchVerdict::keep_watching; }, stop.get_token(),
      options);
  stopper.join();
  REQUIRE(end.ok());
  CHECK((end->reason == WatchEnd::Reason::stop_requested && end->position == 5 && end->delivered == 0));
  CHECK(std::chrono::steady_clock::now() - start < 5s);

  options.after = end->position;
  options.timeout = 50ms;
  end = client.watch_events(
      {}, [](const Event&) { return WatchVerdict::keep_watching; }, {}, options);
  REQUIRE(end.ok());
  CHECK((end->reason == WatchEnd::Reason::timed_out && end->position == 5 && end->delivered == 0));
}

TEST_CASE("calls_from_many_threads_on_one_client_each_get_their_own_reply") {
  ScriptedServer server([](const json& request) -> json { return {{"version", request["name"]}}; });
  Client client = connected_with_defaults(server.path());
  constexpr int kThreads = 8, kCalls = 100;
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        const std::string tag = std::to_string(t) + "." + std::to_string(i);
        Result<std::string> reply = client.call(json({{"command", "version"}, {"name", tag}}).dump());
        if (!reply.ok() || json::parse(*reply)["version"] != tag) ++mismatches;
        if (i % 10 == 0) (void)client.state();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(mismatches == 0);
  CHECK(client.state() == State::connected);
}

TEST_CASE("a_cbt_map_page_that_breaks_the_paging_rules_fails_the_call_and_keeps_the_connection") {
  // What the scripted server answers to cbt-map: `page` (offset 0) and, for a second page, `second`.
  json page;
  json second;
  PageScript script;
  ScriptedServer server([&](const json& request) -> json { return script.answer(request); });
  Client client = connected_with_defaults(server.path());
  CbtQuery query;
  query.origin = "disk";
  const auto ranges = [](std::initializer_list<std::pair<uint64_t, uint64_t>> list) {
    json out = json::array();
    for (const auto& [offset, length] : list) out.push_back({{"offset", offset}, {"length", length}});
    return out;
  };
  const auto refused = [&](const std::string& words) {
    script.set(page, second);
    Result<CbtMap> all = client.cbt_changed_ranges(query);
    REQUIRE_FALSE(all.ok());
    CHECK(all.error().code == kProtocolError);
    CHECK_MESSAGE(all.error().message.find(words) != std::string::npos, all.error().message);
    CHECK(client.state() == State::connected);
  };
  const json base = {{"generation", "g1"},
                     {"block_size", 4096},
                     {"device_size", 1 << 20},
                     {"more", false},
                     {"next_offset", 1 << 20}};
  page = base;
  page["ranges"] = ranges({{8192, 4096}, {4096, 4096}});
  refused("starts before the end of the range before it");
  page["ranges"] = ranges({{0, 8192}, {4096, 8192}});
  refused("sorted and disjoint");
  page["ranges"] = ranges({{4096, 0}});
  refused("is empty");
  page["ranges"] = ranges({{(1 << 20) - 4096, 8192}});
  refused("ends past the device's 1048576 bytes");
  page["ranges"] = ranges({{UINT64_MAX - 10, 4096}});
  refused("ends past 2^64");
  // Outside what was asked: a server that pages clips to [offset, offset+length).
  page["ranges"] = ranges({{0, 8192}});
  query.length = 4096;
  refused("outside the bytes asked for [0, 4096)");
  query.length.reset();
  // One page's range past its next_offset, where the next page starts.
  page = base;
  page["ranges"] = ranges({{0, 8192}});
  page["more"] = true;
  page["next_offset"] = 4096;
  refused("ends past the page's next_offset 4096");
  // Pages of one generation with two block sizes.
  page["ranges"] = ranges({{0, 4096}});
  second = base;
  second["block_size"] = 65536;
  second["ranges"] = ranges({{8192, 4096}});
  refused("block_size changed from 4096 to 65536");
  // A single page asked for is checked as well.
  page = base;
  page["ranges"] = ranges({{8192, 4096}, {0, 4096}});
  script.set(page);
  Result<CbtMap> one = client.cbt_map(query);
  REQUIRE_FALSE(one.ok());
  CHECK(one.error().code == kProtocolError);
  // What holds: adjacent ranges, and a server that does not page sending its whole map whatever was asked.
  page = base;
  page["ranges"] = ranges({{0, 4096}, {4096, 4096}, {65536, 4096}});
  script.set(page);
  CHECK(client.cbt_changed_ranges(query).ok());
  page = {{"generation", "g1"}, {"ranges", ranges({{0, 4096}, {65536, 4096}})}};
  script.set(page);
  query.offset = 32768;
  query.length = 4096;
  Result<CbtMap> old_server = client.cbt_map(query);
  REQUIRE(old_server.ok());
  CHECK(old_server->ranges.size() == 2);
}

TEST_CASE("a_cbt_raw_map_page_whose_runs_do_not_cover_its_blocks_fails_the_call") {
  json page;
  PageScript script;
  ScriptedServer server([&](const json& request) -> json { return script.answer(request); });
  Client client = connected_with_defaults(server.path());
  CbtQuery query;
  query.origin = "disk";
  query.offset = 8192 + 100;  // in block 2
  const auto refused = [&](const std::string& words) {
    script.set(page);
    Result<CbtRawMap> whole = client.cbt_whole_raw_map(query);
    REQUIRE_FALSE(whole.ok());
    CHECK(whole.error().code == kProtocolError);
    CHECK_MESSAGE(whole.error().message.find(words) != std::string::npos, whole.error().message);
    CHECK(client.state() == State::connected);
    Result<CbtRawMap> one = client.cbt_raw_map(query);
    REQUIRE_FALSE(one.ok());
    CHECK(one.error().code == kProtocolError);
  };
  const json base = {
      {"generation", "g1"}, {"block_size", 4096}, {"device_size", 10000 + 8192}, {"offset", 8192},
      {"length", 10000},    {"more", false},      {"next_offset", 10000 + 8192}};
  page = base;
  page["runs"] = {{0, 2}, {3, 1}};  // 3 blocks for 10000 bytes: the last one partial
  script.set(page);
  CHECK(client.cbt_whole_raw_map(query).ok());
  CHECK(client.cbt_raw_map(query).ok());
  page["runs"] = {{0, 2}};
  refused("its runs cover 2 blocks of 4096 bytes, but [8192, 18192) spans 3");
  page["runs"] = {{0, 2}, {1, 0}, {3, 1}};
  refused("run 1 covers no block");
  page["runs"] = {{0, 3}};
  page["offset"] = 8192 + 1024;
  refused("not a multiple of its block_size");
  page["offset"] = 4096;
  page["length"] = 10000 + 4096;
  page["runs"] = {{0, 4}};
  refused("is not the start of the block holding the offset asked for (8292)");
  page = base;
  page["runs"] = {{0, 3}};
  page["length"] = 4096;
  refused("its length 4096 is not next_offset - offset (10000)");
  page = base;
  page["runs"] = {{0, UINT64_MAX}, {1, 2}};
  refused("more than 2^64 blocks");
}
