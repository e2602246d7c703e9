// SPDX-License-Identifier: BSD-3-Clause
// control_test.cpp — every command of docs/control.md through Control::handle, and its error replies.
#include "control.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <set>
#include <thread>

#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;
using json = nlohmann::json;

namespace {

// A front end that attaches MemoryDevices by "path" and makes up URIs, recording what it was asked.
class FakeFrontEnd final : public ControlFrontEnd {
 public:
  explicit FakeFrontEnd(Engine& engine) : engine_(engine) {}
  std::string front_end_name() const override { return "nbdsnapd"; }
  std::string export_uri(const std::string& export_name) const override {
    return "nbd+unix:///" + export_name + "?socket=/run/test.sock";
  }
  unsigned client_count(const std::string& export_name) const override {
    return export_name == "disk0" ? 2 : 0;
  }
  Status attach_origin(const std::string& name, const std::string& path, bool read_only,
                       OriginInfo& attached) override {
    attached_paths.push_back(path);
    Status s =
        engine_.attach_origin(name, std::make_shared<MemoryDevice>(2 * MiB), read_only, 0, 0, {}, &attached);
    if (s && detach_right_after_attach) (void)engine_.detach_origin(name, false);  // another client's call
    return s;
  }
  Status detach_origin(const std::string& name, bool force) override {
    return engine_.detach_origin(name, force);
  }
  std::vector<std::string> attached_paths;
  bool detach_right_after_attach = false;

 private:
  Engine& engine_;
};

// An engine with two origins and a Control over the fake front end.
struct ControlFixture {
  ControlFixture() : engine(small_config(16)), front_end(engine), control(engine, front_end) {
    attach_memory_origin(engine, "disk0", 4 * MiB);
    attach_memory_origin(engine, "disk1", 2 * MiB);
  }
  json ok(const json& request) {
    json reply = control.handle(request);
    INFO("request: " << request.dump() << " reply: " << reply.dump());
    REQUIRE(reply.is_object());
    REQUIRE(reply.value("ok", false) == true);
    return reply;
  }
  json fails(const json& request, const std::string& code) {
    json reply = control.handle(request);
    INFO("request: " << request.dump() << " reply: " << reply.dump());
    check_error_shape(reply);
    CHECK(reply["error"]["code"] == code);
    return reply;
  }
  static void check_error_shape(const json& reply) {
    static const std::set<std::string> codes = {
        "invalid_argument", "out_of_range", "not_found",     "already_exists",  "busy",
        "bad_state",        "read_only",    "no_space",      "io_error",        "corrupted",
        "not_supported",    "overflow",     "name_too_long", "checkpoint_gone", "permission_denied"};
    REQUIRE(reply.is_object());
    CHECK(reply["ok"] == false);
    REQUIRE(reply.contains("error"));
    const json& error = reply["error"];
    REQUIRE(error.is_object());
    REQUIRE(error["code"].is_string());
    CHECK(codes.count(error["code"].get<std::string>()) == 1);
    CHECK(error["errno"].is_number_integer());
    CHECK(error["errno"].get<int>() > 0);
    REQUIRE(error["message"].is_string());
    CHECK_FALSE(error["message"].get<std::string>().empty());
  }
  // The engine's visible state, to show that a failed command changed nothing.
  std::string state() {
    json all = {{"origins", control.handle({{"command", "origins"}})},
                {"snapshots", control.handle({{"command", "snapshot-list"}})}};
    return all.dump();
  }
  json create_request(const std::string& name, const std::vector<std::string>& origins) {
    return {{"command", "snapshot-create"},
            {"name", name},
            {"origins", origins},
            {"storage", json::array({{{"path", dir.file(name + ".diff")}, {"size", 4 * MiB}}})}};
  }

  TempDir dir;
  Engine engine;
  FakeFrontEnd front_end;
  Control control;
};

void check_origin_object(const json& origin) {
  for (const char* key : {"name", "size", "read_only", "generation", "change_number", "tracking_block_size",
                          "chunk_size", "snapshot", "clients", "uri"}) {
    CAPTURE(key);
    CHECK(origin.contains(key));
  }
  // A listed origin always has its tracker: a field saying so would only ever say true.
  CHECK_FALSE(origin.contains("tracker_attached"));
}

void check_snapshot_object(const json& snapshot) {
  for (const char* key : {"name", "state", "writable", "origins", "images", "storage", "storage_total",
                          "storage_used", "storage_limit", "chunks_copied", "memory_bytes",
                          "corruption_reason", "origin_errors", "taken_unix_ms"}) {
    CAPTURE(key);
    CHECK(snapshot.contains(key));
  }
}

}  // namespace

TEST_CASE("control version names the protocol and the front end") {
  ControlFixture f;
  const json reply = f.ok({{"command", "version"}});
  CHECK(reply["version"].is_string());
  CHECK_FALSE(reply["version"].get<std::string>().empty());
  CHECK(reply["protocol"] == kControlProtocolVersion);
  CHECK(reply["protocol"] == 1);
  CHECK(reply["front_end"] == "nbdsnapd");
}

TEST_CASE("control origins and origin-info describe each origin") {
  ControlFixture f;
  const json reply = f.ok({{"command", "origins"}});
  REQUIRE(reply["origins"].is_array());
  REQUIRE(reply["origins"].size() == 2);
  for (const json& origin : reply["origins"]) check_origin_object(origin);

  const json info = f.ok({{"command", "origin-info"}, {"name", "disk0"}});
  const json& origin = info["origin"];
  check_origin_object(origin);
  CHECK(origin["name"] == "disk0");
  CHECK(origin["size"] == 4 * MiB);
  CHECK(origin["read_only"] == false);
  CHECK(Uuid::parse(origin["generation"].get<std::string>()).has_value());
  CHECK(origin["change_number"] == 1);
  CHECK(origin["tracking_block_size"] == 4096);
  CHECK(origin["chunk_size"] == 65536);
  CHECK(origin["snapshot"] == "");
  CHECK(origin["clients"] == 2);
  CHECK(origin["uri"] == "nbd+unix:///disk0?socket=/run/test.sock");
}

TEST_CASE("control origin-attach and origin-detach go through the front end") {
  ControlFixture f;
  const json reply =
      f.ok({{"command", "origin-attach"}, {"name", "disk2"}, {"path", "/dev/fake"}, {"read_only", true}});
  CHECK(reply["origin"]["name"] == "disk2");
  CHECK(reply["origin"]["read_only"] == true);
  CHECK(f.front_end.attached_paths == std::vector<std::string>{"/dev/fake"});
  CHECK(f.engine.find_origin("disk2") != nullptr);
  f.ok({{"command", "origin-detach"}, {"name", "disk2"}});
  CHECK(f.engine.find_origin("disk2") == nullptr);
  f.fails({{"command", "origin-detach"}, {"name", "disk2"}}, "not_found");
}

// The reply describes the origin this attach made, as it made it: looked up by name afterwards, it said
// not_found after a detach that came first, or described another attach's origin (attack13 F4).
TEST_CASE("control origin-attach answers with the origin it attached, even if it is gone by then") {
  ControlFixture f;
  f.front_end.detach_right_after_attach = true;
  const json reply =
      f.ok({{"command", "origin-attach"}, {"name", "disk2"}, {"path", "/dev/fake"}, {"read_only", true}});
  CHECK(reply["origin"]["name"] == "disk2");
  CHECK(reply["origin"]["read_only"] == true);
  CHECK(reply["origin"]["size"] == 2 * MiB);
  CHECK(f.engine.find_origin("disk2") == nullptr);
}

TEST_CASE("control origin-attach is not supported by a front end that cannot attach") {
  Engine engine(small_config());
  struct Minimal final : ControlFrontEnd {
    std::string front_end_name() const override { return "nbdkit-filter"; }
    std::string export_uri(const std::string&) const override { return ""; }
  } minimal;
  Control control(engine, minimal);
  const json reply = control.handle({{"command", "origin-attach"}, {"name", "x"}, {"path", "/dev/null"}});
  ControlFixture::check_error_shape(reply);
  CHECK(reply["error"]["code"] == "not_supported");
  CHECK(control.handle({{"command", "version"}})["front_end"] == "nbdkit-filter");
  CHECK(engine.origins().empty());
}

TEST_CASE("control cbt commands mark, map, list checkpoints and reset") {
  ControlFixture f;
  f.ok({{"command", "cbt-mark-dirty"},
        {"origin", "disk0"},
        {"ranges", json::array({{{"offset", 0}, {"length", 1}}, {{"offset", 8192}, {"length", 8192}}})}});
  json map = f.ok({{"command", "cbt-map"}, {"origin", "disk0"}});
  CHECK(map["block_size"] == 4096);
  CHECK(map["change_number"] == 1);
  CHECK(map["ranges"] == json::parse(R"([{"offset":0,"length":4096},{"offset":8192,"length":8192}])"));
  const std::string generation = map["generation"];

  f.ok(f.create_request("s1", {"disk0"}));
  const json taken = f.ok({{"command", "snapshot-take"}, {"name", "s1"}});
  f.ok({{"command", "snapshot-destroy"}, {"name", "s1"}});
  f.ok({{"command", "cbt-mark-dirty"},
        {"origin", "disk0"},
        {"ranges", json::array({{{"offset", MiB}, {"length", 10}}})}});
  map = f.ok({{"command", "cbt-map"}, {"origin", "disk0"}, {"since", "s1"}});
  CHECK(map["ranges"] == json::parse(R"([{"offset":1048576,"length":4096}])"));
  CHECK(map["change_number"] == 2);

  const json info = f.ok({{"command", "cbt-info"}, {"origin", "disk0"}});
  const json& cbt = info["cbt"];
  CHECK(cbt["origin"] == "disk0");
  CHECK(cbt["generation"] == generation);
  CHECK(cbt["change_number"] == 2);
  CHECK(cbt["block_size"] == 4096);
  CHECK(cbt["block_count"] == 1024);
  CHECK(cbt["device_size"] == 4 * MiB);
  CHECK(cbt["checkpoints"] == json::parse(R"({"s1":1})"));

  const json checkpoints = f.ok({{"command", "checkpoints"}, {"origin", "disk0"}});
  CHECK(checkpoints["generation"] == generation);
  REQUIRE(checkpoints["checkpoints"].size() == 1);
  CHECK(checkpoints["checkpoints"][0]["name"] == "s1");
  CHECK(checkpoints["checkpoints"][0]["number"] == 1);
  CHECK(checkpoints["checkpoints"][0]["taken_unix_ms"] == taken["snapshot"]["taken_unix_ms"]);

  const json reset = f.ok({{"command", "cbt-reset"}, {"origin", "disk0"}});
  CHECK(reset["generation"].is_string());
  CHECK(reset["generation"] != generation);
  CHECK(f.ok({{"command", "checkpoints"}, {"origin", "disk0"}})["checkpoints"].empty());
  CHECK(f.ok({{"command", "cbt-map"}, {"origin", "disk0"}})["ranges"].empty());
  const json gone =
      f.fails({{"command", "cbt-map"}, {"origin", "disk0"}, {"since", "s1"}}, "checkpoint_gone");
  CHECK(gone["error"]["message"].get<std::string>().find("do a full backup") != std::string::npos);
  f.fails({{"command", "cbt-map"}, {"origin", "disk0"}, {"since", "never"}}, "not_found");
}

TEST_CASE("control cbt-map pages by offset and length, and reads a snapshot's frozen map") {
  ControlFixture f;  // disk0: 4 MiB in 4 KiB tracking blocks
  json ranges = json::array();
  for (int i = 0; i < 5; ++i)
    ranges.push_back({{"offset", i * 2 * 4096}, {"length", 1}});  // blocks 0, 2, 4, 6, 8
  f.ok({{"command", "cbt-mark-dirty"}, {"origin", "disk0"}, {"ranges", ranges}});
  json page = f.ok({{"command", "cbt-map"}, {"origin", "disk0"}, {"max_ranges", 2}});
  CHECK(page["ranges"] == json::parse(R"([{"offset":0,"length":4096},{"offset":8192,"length":4096}])"));
  CHECK(page["more"] == true);
  CHECK(page["next_offset"] == 16384);
  page = f.ok(
      {{"command", "cbt-map"}, {"origin", "disk0"}, {"max_ranges", 2}, {"offset", 16384}, {"length", 20000}});
  CHECK(page["ranges"] == json::parse(R"([{"offset":16384,"length":4096},{"offset":24576,"length":4096}])"));
  CHECK(page["more"] == true);
  CHECK(page["next_offset"] == 32768);
  page = f.ok({{"command", "cbt-map"}, {"origin", "disk0"}, {"offset", 32768}, {"length", 100}});
  CHECK(page["ranges"] == json::parse(R"([{"offset":32768,"length":100}])"));
  CHECK(page["more"] == false);
  CHECK(page["next_offset"] == 32868);
  CHECK(page["device_size"] == 4 * MiB);
  f.fails({{"command", "cbt-map"}, {"origin", "disk0"}, {"max_ranges", 0}}, "invalid_argument");
  f.fails({{"command", "cbt-map"}, {"origin", "disk0"}, {"max_ranges", 16385}}, "invalid_argument");
  f.fails({{"command", "cbt-map"}, {"origin", "disk0"}, {"offset", 4 * MiB + 1}}, "out_of_range");

  // A snapshot's frozen map does not see writes made after its take.
  f.ok(f.create_request("s1", {"disk0"}));
  f.ok({{"command", "snapshot-take"}, {"name", "s1"}});
  f.ok({{"command", "cbt-mark-dirty"},
        {"origin", "disk0"},
        {"ranges", json::array({{{"offset", MiB}, {"length", 1}}})}});
  page = f.ok({{"command", "cbt-map"}, {"origin", "disk0"}, {"snapshot", "s1"}});
  CHECK(page["snapshot"] == "s1");
  CHECK(page["change_number"] == 1);
  CHECK(page["ranges"].size() == 5);
  CHECK(f.ok({{"command", "cbt-map"}, {"origin", "disk0"}})["ranges"].size() == 6);
  CHECK(f.ok({{"command", "cbt-info"}, {"origin", "disk0"}, {"snapshot", "s1"}})["cbt"]["change_number"] ==
        1);
  CHECK(f.ok({{"command", "checkpoints"}, {"origin", "disk0"}, {"snapshot", "s1"}})["checkpoints"].size() ==
        1);
  f.fails({{"command", "cbt-map"}, {"origin", "disk1"}, {"snapshot", "s1"}}, "not_found");
  f.fails({{"command", "cbt-map"}, {"origin", "disk0"}, {"snapshot", "nosuch"}}, "not_found");
}

TEST_CASE("control cbt-raw-map returns change numbers as runs, in pages") {
  ControlFixture f;
  f.ok({{"command", "cbt-mark-dirty"},
        {"origin", "disk0"},
        {"ranges", json::array({{{"offset", 4096}, {"length", 1}}})}});
  f.ok(f.create_request("s1", {"disk0"}));
  f.ok({{"command", "snapshot-take"}, {"name", "s1"}});
  f.ok({{"command", "cbt-mark-dirty"},
        {"origin", "disk0"},
        {"ranges", json::array({{{"offset", 8192}, {"length", 1}}})}});
  json raw = f.ok({{"command", "cbt-raw-map"}, {"origin", "disk0"}});
  CHECK(raw["runs"] == json::parse("[[0,1],[1,1],[2,1],[0,1021]]"));
  CHECK(raw["offset"] == 0);
  CHECK(raw["length"] == 4 * MiB);
  CHECK(raw["more"] == false);
  CHECK(raw["next_offset"] == 4 * MiB);
  CHECK(raw["block_size"] == 4096);
  CHECK(raw["change_number"] == 2);
  CHECK(raw["checkpoints"][0]["name"] == "s1");
  CHECK(raw["checkpoints"][0]["number"] == 1);
  // Unaligned requests widen to whole blocks; pages end where max_runs stops them.
  raw = f.ok({{"command", "cbt-raw-map"}, {"origin", "disk0"}, {"offset", 4097}, {"length", 10}});
  CHECK(raw["offset"] == 4096);
  CHECK(raw["length"] == 4096);
  CHECK(raw["runs"] == json::parse("[[1,1]]"));
  raw = f.ok({{"command", "cbt-raw-map"}, {"origin", "disk0"}, {"max_runs", 2}});
  CHECK(raw["runs"] == json::parse("[[0,1],[1,1]]"));
  CHECK(raw["more"] == true);
  CHECK(raw["next_offset"] == 8192);
  // The frozen map of s1 does not have the later write.
  raw = f.ok({{"command", "cbt-raw-map"}, {"origin", "disk0"}, {"snapshot", "s1"}});
  CHECK(raw["runs"] == json::parse("[[0,1],[1,1],[0,1022]]"));
  CHECK(raw["change_number"] == 1);
  f.fails({{"command", "cbt-raw-map"}, {"origin", "disk0"}, {"max_runs", 32769}}, "invalid_argument");
  f.fails({{"command", "cbt-raw-map"}, {"origin", "ghost"}}, "not_found");
}

TEST_CASE("control checkpoint-delete drops a checkpoint of the live CBT") {
  ControlFixture f;
  f.ok(f.create_request("s1", {"disk0"}));
  f.ok({{"command", "snapshot-take"}, {"name", "s1"}});
  f.ok({{"command", "checkpoint-delete"}, {"origin", "disk0"}, {"name", "s1"}});
  CHECK(f.ok({{"command", "checkpoints"}, {"origin", "disk0"}})["checkpoints"].empty());
  f.fails({{"command", "checkpoint-delete"}, {"origin", "disk0"}, {"name", "s1"}}, "checkpoint_gone");
  f.fails({{"command", "checkpoint-delete"}, {"origin", "disk0"}, {"name", "never"}}, "not_found");
  f.fails({{"command", "checkpoint-delete"}, {"origin", "disk0"}}, "invalid_argument");
  // The image keeps its own checkpoints.
  CHECK(f.ok({{"command", "checkpoints"}, {"origin", "disk0"}, {"snapshot", "s1"}})["checkpoints"].size() ==
        1);
}

TEST_CASE("control snapshot commands create, add, remove, take, append, list and destroy") {
  ControlFixture f;
  json reply = f.ok({{"command", "snapshot-create"},
                     {"name", "nightly"},
                     {"origins", {"disk0"}},
                     {"storage", json::array({{{"path", f.dir.file("d0")}, {"size", 4 * MiB}}})},
                     {"limit", 3 * MiB},
                     {"writable", true}});
  json snapshot = reply["snapshot"];
  check_snapshot_object(snapshot);
  CHECK(snapshot["name"] == "nightly");
  CHECK(snapshot["state"] == "created");
  CHECK(snapshot["writable"] == true);
  CHECK(snapshot["origins"] == json::array({"disk0"}));
  CHECK(snapshot["images"].empty());
  CHECK(snapshot["storage"] == json::array({{{"path", f.dir.file("d0")},
                                             {"offset", 0},
                                             {"size", 4 * MiB},
                                             {"created", true},
                                             {"sparse", false}}}));
  CHECK(snapshot["storage_total"] == 4 * MiB);
  CHECK(snapshot["storage_limit"] == 3 * MiB);

  f.ok({{"command", "snapshot-add"}, {"name", "nightly"}, {"origin", "disk1"}});
  CHECK(f.ok({{"command", "origin-info"}, {"name", "disk1"}})["origin"]["snapshot"] == "nightly");
  f.ok({{"command", "snapshot-remove"}, {"name", "nightly"}, {"origin", "disk1"}});
  CHECK(f.ok({{"command", "origin-info"}, {"name", "disk1"}})["origin"]["snapshot"] == "");
  f.ok({{"command", "snapshot-add"}, {"name", "nightly"}, {"origin", "disk1"}});

  reply = f.ok({{"command", "snapshot-take"}, {"name", "nightly"}});
  snapshot = reply["snapshot"];
  CHECK(snapshot["state"] == "taken");
  CHECK(snapshot["taken_unix_ms"].get<int64_t>() > 0);
  REQUIRE(snapshot["images"].size() == 2);
  std::set<std::string> exports;
  for (const json& image : snapshot["images"]) {
    exports.insert(image["export"].get<std::string>());
    CHECK(image["uri"] == "nbd+unix:///" + image["export"].get<std::string>() + "?socket=/run/test.sock");
    CHECK(image["export"] == image["origin"].get<std::string>() + "@nightly");
  }
  CHECK(exports == std::set<std::string>{"disk0@nightly", "disk1@nightly"});

  reply = f.ok({{"command", "snapshot-append-storage"},
                {"name", "nightly"},
                {"path", f.dir.file("d1")},
                {"size", MiB}});
  CHECK(reply["snapshot"]["storage_total"] == 5 * MiB);
  CHECK(reply["snapshot"]["storage"].size() == 2);

  reply = f.ok({{"command", "snapshot-info"}, {"name", "nightly"}});
  check_snapshot_object(reply["snapshot"]);
  CHECK(reply["snapshot"]["name"] == "nightly");
  reply = f.ok({{"command", "snapshot-list"}});
  REQUIRE(reply["snapshots"].size() == 1);
  CHECK(reply["snapshots"][0]["name"] == "nightly");

  f.ok({{"command", "snapshot-destroy"}, {"name", "nightly"}});
  CHECK(f.ok({{"command", "snapshot-list"}})["snapshots"].empty());
  CHECK_FALSE(std::filesystem::exists(f.dir.file("d0")));
  CHECK_FALSE(std::filesystem::exists(f.dir.file("d1")));
}

// snapshot_reply() used to look the snapshot up again after the call: a destroy by another client in between
// made a create (or take) that had succeeded answer not_found. The reply now comes from what the call saw.
TEST_CASE("control create and take answer for the snapshot they made, even when another client destroys it") {
  ControlFixture f;
  std::atomic<bool> stop{false};
  std::atomic<unsigned> destroyed{0};
  std::thread other_client([&] {
    while (!stop) {
      if (f.engine.destroy_snapshot("r").is_ok()) ++destroyed;
    }
  });
  unsigned created = 0, taken = 0;
  for (int i = 0; i < 6000 && created < 400; ++i) {
    json reply = f.control.handle(f.create_request("r", {"disk1"}));
    INFO("create reply: " << reply.dump());
    if (reply.value("ok", false)) {
      ++created;
      CHECK(reply["snapshot"]["name"] == "r");
      CHECK(reply["snapshot"]["state"] == "created");
    } else {  // the other client has not destroyed the last one yet, or is destroying it
      CHECK((reply["error"]["code"] == "already_exists" || reply["error"]["code"] == "busy"));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    reply = f.control.handle({{"command", "snapshot-take"}, {"name", "r"}});
    INFO("take reply: " << reply.dump());
    if (reply.value("ok", false)) {
      ++taken;
      CHECK(reply["snapshot"]["name"] == "r");
      CHECK(reply["snapshot"]["state"] == "taken");
    } else {  // destroyed before the take began: then not_found (or busy) is the right answer
      CHECK((reply["error"]["code"] == "not_found" || reply["error"]["code"] == "busy"));
    }
  }
  stop = true;
  other_client.join();
  (void)f.engine.destroy_snapshot("r");
  CHECK(created > 0);
  MESSAGE(created << " creates, " << taken << " takes, " << destroyed.load()
                  << " destroys by the other client");
}

TEST_CASE("control events-wait returns events after a sequence") {
  ControlFixture f;
  f.ok(f.create_request("s", {"disk0"}));
  f.ok({{"command", "snapshot-take"}, {"name", "s"}});
  json reply = f.ok({{"command", "events-wait"}});
  REQUIRE(reply["events"].is_array());
  REQUIRE_FALSE(reply["events"].empty());
  const uint64_t last = reply["last_sequence"];
  CHECK(last == reply["events"].back()["sequence"].get<uint64_t>());
  bool taken = false;
  for (const json& event : reply["events"]) {
    for (const char* key :
         {"sequence", "time_unix_ms", "type", "snapshot", "origin", "reason", "requested_bytes", "bytes"}) {
      CAPTURE(key);
      CHECK(event.contains(key));
    }
    if (event["type"] == "snapshot_taken" && event["snapshot"] == "s") taken = true;
  }
  CHECK(taken);

  reply = f.ok({{"command", "events-wait"}, {"after", last}, {"timeout_ms", 20}});
  CHECK(reply["events"].empty());
  f.ok({{"command", "snapshot-destroy"}, {"name", "s"}});
  reply = f.ok({{"command", "events-wait"}, {"after", last}, {"timeout_ms", 1000}});
  REQUIRE_FALSE(reply["events"].empty());
  CHECK(reply["events"][0]["type"] == "snapshot_destroyed");
  CHECK(reply["events"][0]["sequence"].get<uint64_t>() > last);
}

TEST_CASE("control refuses unknown commands and malformed requests without changing anything") {
  ControlFixture f;
  f.ok(f.create_request("s", {"disk0"}));
  const std::string before = f.state();
  for (const json& request :
       {json{{"command", "snapshot-explode"}, {"name", "s"}}, json{{"name", "s"}}, json{{"command", 42}},
        json::array({"snapshot-destroy", "s"}), json("version"), json(nullptr)}) {
    CAPTURE(request.dump());
    const json reply = f.control.handle(request);
    ControlFixture::check_error_shape(reply);
    const std::string code = reply["error"]["code"];
    CHECK((code == "invalid_argument" || code == "not_supported"));
  }
  CHECK(f.state() == before);
}

TEST_CASE("control storage entries may be ranges of a file: {path, offset, length}") {
  ControlFixture f;
  {
    std::ofstream file(f.dir.file("shared"), std::ios::binary);
    file.seekp(static_cast<std::streamoff>(8 * MiB - 1));
    file.put('\0');
  }
  json reply = f.ok(
      {{"command", "snapshot-create"},
       {"name", "r"},
       {"origins", {"disk0"}},
       {"storage", json::array({{{"path", f.dir.file("shared")}, {"offset", MiB}, {"length", 2 * MiB}}})}});
  CHECK(reply["snapshot"]["storage"] == json::array({{{"path", f.dir.file("shared")},
                                                      {"offset", MiB},
                                                      {"size", 2 * MiB},
                                                      {"created", false},
                                                      {"sparse", false}}}));
  reply = f.ok({{"command", "snapshot-append-storage"},
                {"name", "r"},
                {"path", f.dir.file("shared")},
                {"offset", 4 * MiB}});  // no length: to the end
  CHECK(reply["snapshot"]["storage"][1]["size"] == 4 * MiB);
  CHECK(reply["snapshot"]["storage_total"] == 6 * MiB);
  f.fails({{"command", "snapshot-append-storage"},
           {"name", "r"},
           {"path", f.dir.file("shared")},
           {"offset", 2 * MiB},
           {"length", 2 * MiB}},
          "already_exists");
  f.fails({{"command", "snapshot-append-storage"},
           {"name", "r"},
           {"path", f.dir.file("shared")},
           {"offset", 0},
           {"length", 16 * MiB}},
          "already_exists");
  f.fails({{"command", "snapshot-append-storage"},
           {"name", "r"},
           {"path", f.dir.file("none")},
           {"offset", 0},
           {"length", MiB}},
          "not_found");
  CHECK_FALSE(std::filesystem::exists(f.dir.file("none")));
}

TEST_CASE("control snapshot info and the corrupted event give the origin's errno with its text") {
  ControlFixture f;
  f.ok({{"command", "snapshot-create"},
        {"name", "s"},
        {"origins", {"disk0"}},
        {"storage", json::array({{{"path", f.dir.file("s.diff")}, {"size", 64 * 1024}}})}});  // one chunk
  f.ok({{"command", "snapshot-take"}, {"name", "s"}});
  const uint64_t after = f.ok({{"command", "events-wait"}})["last_sequence"];
  auto origin = f.engine.find_origin("disk0");
  const auto data = pattern(4096, 0, 2);
  for (uint64_t chunk = 0; chunk < 3; ++chunk)
    REQUIRE_OK(origin->write(data.data(), 4096, chunk * 64 * 1024, false));
  // Buffered chunks are stored in the background: the storage fills there.
  REQUIRE(wait_for_event(f.engine.events(), EventType::corrupted, after, std::chrono::seconds(10), "s")
              .has_value());
  json snapshot = f.ok({{"command", "snapshot-info"}, {"name", "s"}})["snapshot"];
  CHECK(snapshot["state"] == "corrupted");
  REQUIRE(snapshot["origin_errors"].size() == 1);
  const json& error = snapshot["origin_errors"][0];
  CHECK(error["origin"] == "disk0");
  CHECK(error["errno"] == ENOSPC);
  CHECK(error["error"] == "No space left on device");
  CHECK(error["reason"].get<std::string>().find("difference storage is full") == 0);
  json events = f.ok({{"command", "events-wait"}, {"after", after}})["events"];
  bool found = false;
  for (const json& event : events) {
    if (event["type"] != "corrupted") {
      CHECK(event["errno"] == 0);
      continue;
    }
    found = true;
    CHECK(event["origin"] == "disk0");
    CHECK(event["errno"] == ENOSPC);
    CHECK(event["error"] == "No space left on device");
  }
  CHECK(found);
  // A healthy snapshot lists no errors.
  f.ok(f.create_request("t", {"disk1"}));
  CHECK(f.ok({{"command", "snapshot-info"}, {"name", "t"}})["snapshot"]["origin_errors"] == json::array());
}

TEST_CASE("control refuses bad arguments with invalid_argument and changes nothing") {
  ControlFixture f;
  f.ok(f.create_request("s", {"disk0"}));
  const std::string before = f.state();
  const std::vector<json> requests = {
      {{"command", "origin-info"}},
      {{"command", "origin-info"}, {"name", 5}},
      {{"command", "snapshot-destroy"}},
      {{"command", "snapshot-take"}, {"name", json::array({"s"})}},
      {{"command", "snapshot-create"}, {"name", "t"}, {"origins", "disk1"}, {"storage", json::array()}},
      {{"command", "snapshot-create"},
       {"name", "bad/name"},
       {"origins", {"disk1"}},
       {"storage", json::array({{{"path", f.dir.file("x")}, {"size", MiB}}})}},
      {{"command", "snapshot-create"}, {"name", "t"}, {"origins", {"disk1"}}, {"storage", "/tmp/x"}},
      {{"command", "snapshot-create"},
       {"name", "t"},
       {"origins", {"disk1"}},
       {"storage", json::array({{{"path", f.dir.file("x")}, {"size", -1}}})}},
      {{"command", "snapshot-append-storage"}, {"name", "s"}, {"path", 7}, {"size", MiB}},
      {{"command", "snapshot-append-storage"},
       {"name", "s"},
       {"path", f.dir.file("x")},
       {"size", MiB},
       {"offset", 0},
       {"length", MiB}},
      {{"command", "snapshot-append-storage"}, {"name", "s"}, {"path", f.dir.file("x")}, {"offset", -1}},
      {{"command", "snapshot-create"},
       {"name", "t"},
       {"origins", {"disk1"}},
       {"storage", json::array({{{"path", f.dir.file("x")}, {"size", MiB}, {"length", MiB}}})}},
      {{"command", "cbt-mark-dirty"}, {"origin", "disk0"}, {"ranges", "everything"}},
      {{"command", "cbt-mark-dirty"}, {"origin", "disk0"}, {"ranges", json::array({{{"offset", "zero"}}})}},
      {{"command", "events-wait"}, {"after", "yesterday"}},
      {{"command", "origin-detach"}, {"name", "disk1"}, {"force", "yes"}},
  };
  for (const json& request : requests) f.fails(request, "invalid_argument");
  CHECK(f.state() == before);
  CHECK_FALSE(std::filesystem::exists(f.dir.file("x")));
}

TEST_CASE("control answers unknown names with not_found and changes nothing") {
  ControlFixture f;
  f.ok(f.create_request("s", {"disk0"}));
  const std::string before = f.state();
  const std::vector<json> requests = {
      {{"command", "origin-info"}, {"name", "ghost"}},
      {{"command", "origin-detach"}, {"name", "ghost"}},
      {{"command", "cbt-info"}, {"origin", "ghost"}},
      {{"command", "cbt-map"}, {"origin", "ghost"}},
      {{"command", "cbt-map"}, {"origin", "disk0"}, {"since", "ghost"}},
      {{"command", "cbt-mark-dirty"}, {"origin", "ghost"}, {"ranges", json::array()}},
      {{"command", "cbt-reset"}, {"origin", "ghost"}},
      {{"command", "checkpoints"}, {"origin", "ghost"}},
      {{"command", "cbt-raw-map"}, {"origin", "ghost"}},
      {{"command", "cbt-raw-map"}, {"origin", "disk0"}, {"snapshot", "ghost"}},
      {{"command", "checkpoint-delete"}, {"origin", "ghost"}, {"name", "c"}},
      {{"command", "checkpoint-delete"}, {"origin", "disk0"}, {"name", "ghost"}},
      {{"command", "snapshot-add"}, {"name", "ghost"}, {"origin", "disk1"}},
      {{"command", "snapshot-add"}, {"name", "s"}, {"origin", "ghost"}},
      {{"command", "snapshot-remove"}, {"name", "s"}, {"origin", "disk1"}},
      {{"command", "snapshot-take"}, {"name", "ghost"}},
      {{"command", "snapshot-append-storage"}, {"name", "ghost"}, {"path", f.dir.file("y")}, {"size", MiB}},
      {{"command", "snapshot-info"}, {"name", "ghost"}},
      {{"command", "snapshot-destroy"}, {"name", "ghost"}},
      f.create_request("t", {"disk1", "ghost"}),
  };
  for (const json& request : requests) f.fails(request, "not_found");
  CHECK(f.state() == before);
  CHECK_FALSE(std::filesystem::exists(f.dir.file("y")));
  CHECK_FALSE(std::filesystem::exists(f.dir.file("t.diff")));
}

TEST_CASE("control refuses state violations with their codes and changes nothing") {
  ControlFixture f;
  f.ok(f.create_request("s", {"disk0"}));
  f.ok({{"command", "snapshot-take"}, {"name", "s"}});
  const std::string before = f.state();
  f.fails(f.create_request("s", {"disk1"}), "already_exists");
  f.fails({{"command", "snapshot-take"}, {"name", "s"}}, "bad_state");
  f.fails({{"command", "snapshot-add"}, {"name", "s"}, {"origin", "disk1"}}, "bad_state");
  f.fails({{"command", "origin-detach"}, {"name", "disk0"}}, "busy");
  const json twice = f.control.handle(f.create_request("t", {"disk0"}));
  ControlFixture::check_error_shape(twice);
  CHECK((twice["error"]["code"] == "busy" || twice["error"]["code"] == "already_exists"));
  CHECK(f.state() == before);
}

TEST_CASE("control handle_line answers one line, also for text that is not JSON") {
  ControlFixture f;
  const std::string line = f.control.handle_line(R"({"command":"version"})");
  CHECK(line.find('\n') == std::string::npos);
  const json reply = json::parse(line);
  CHECK(reply["ok"] == true);
  CHECK(reply["protocol"] == 1);

  for (const std::string bad : {"{not json", "", "[1,2", "\"version\""}) {
    CAPTURE(bad);
    const std::string answer = f.control.handle_line(bad);
    CHECK(answer.find('\n') == std::string::npos);
    const json parsed = json::parse(answer, nullptr, false);
    REQUIRE_FALSE(parsed.is_discarded());
    ControlFixture::check_error_shape(parsed);
    CHECK(parsed["error"]["code"] == "invalid_argument");
  }
}

TEST_CASE("error_reply carries the code, errno and message of a status") {
  const json reply = error_reply(Status(Errc::not_found, "snapshot 'x' does not exist"));
  CHECK(reply["ok"] == false);
  CHECK(reply["error"]["code"] == "not_found");
  CHECK(reply["error"]["errno"] == to_errno(Status(Errc::not_found, "")));
  CHECK(reply["error"]["message"].get<std::string>().find("snapshot 'x' does not exist") !=
        std::string::npos);
}

TEST_CASE("control refuses numbers that do not fit and ranges that overflow") {
  ControlFixture f;
  const std::string before = f.state();
  for (
      const std::string line :
      {R"({"command":"events-wait","after":1e999})", R"({"command":"events-wait","after":-1})",
       R"({"command":"events-wait","timeout_ms":1.5})",
       R"({"command":"cbt-mark-dirty","origin":"disk0","ranges":[{"offset":99999999999999999999999,"length":1}]})",
       R"({"command":"snapshot-create","name":"t","origins":["disk1"],"storage":[{"path":"/tmp/x","size":1e30}]})"}) {
    CAPTURE(line);
    const json reply = json::parse(f.control.handle_line(line));
    ControlFixture::check_error_shape(reply);
    CHECK(reply["error"]["code"] == "invalid_argument");
  }
  const json overflow =
      f.control.handle({{"command", "cbt-mark-dirty"},
                        {"origin", "disk0"},
                        {"ranges", json::array({{{"offset", UINT64_MAX}, {"length", 2}}})}});
  ControlFixture::check_error_shape(overflow);
  CHECK(overflow["error"]["code"] == "out_of_range");
  CHECK(f.state() == before);
  CHECK(f.ok({{"command", "cbt-map"}, {"origin", "disk0"}})["ranges"].empty());
}

TEST_CASE("control cbt-map and cbt-raw-map pages of a map that changes every other block stay under 1 MiB") {
  ControlFixture f;
  constexpr uint64_t kBlocks = 1 << 17;  // 4 KiB tracking blocks: 512 MiB
  attach_memory_origin(f.engine, "big", kBlocks * 4096);
  std::vector<Range> every_other;
  for (uint64_t b = 0; b < kBlocks; b += 2) every_other.push_back({b * 4096, 1});
  REQUIRE_OK(f.engine.cbt_mark_dirty("big", every_other));
  for (const char* command : {"cbt-map", "cbt-raw-map"}) {
    CAPTURE(command);
    const bool raw = std::string(command) == "cbt-raw-map";
    uint64_t offset = 0, items = 0, pages = 0;
    for (bool more = true; more; ++pages) {
      const json page = f.ok({{"command", command}, {"origin", "big"}, {"offset", offset}});
      CHECK(page.dump().size() < (1u << 20));
      const json& list = page[raw ? "runs" : "ranges"];
      CHECK(list.size() == (raw ? 32768u : 16384u));
      items += list.size();
      REQUIRE(page["next_offset"].get<uint64_t>() > offset);
      offset = page["next_offset"];
      more = page["more"];
    }
    CHECK(pages == 4);
    CHECK(items == (raw ? kBlocks : kBlocks / 2));
    CHECK(offset == kBlocks * 4096);
  }
}

TEST_CASE("control refuses a command above the caller's role and names the role it needs") {
  ControlFixture f;
  const ControlCaller reader{"psk:reader", ControlRole::read_only, std::nullopt};
  json listed = json::parse(f.control.handle_line(R"({"command":"snapshot-list"})", reader));
  CHECK(listed["ok"] == true);
  const std::string before = f.state();
  json refused = json::parse(f.control.handle_line(f.create_request("s1", {"disk0"}).dump(), reader));
  ControlFixture::check_error_shape(refused);
  CHECK(refused["error"]["code"] == "permission_denied");
  CHECK(refused["error"]["message"] ==
        "command 'snapshot-create' needs the operator role; psk:reader has read-only");
  CHECK(f.state() == before);
  const ControlCaller operator_caller{"psk:op", ControlRole::operator_role, std::nullopt};
  CHECK(json::parse(f.control.handle_line(f.create_request("s1", {"disk0"}).dump(), operator_caller))["ok"] ==
        true);
  json detach =
      json::parse(f.control.handle_line(R"({"command":"origin-detach","name":"disk1"})", operator_caller));
  CHECK(detach["error"]["code"] == "permission_denied");
  // A command nobody listed needs admin; an admin learns that it does not exist.
  CHECK(json::parse(f.control.handle_line(R"({"command":"made-up"})", operator_caller))["error"]["code"] ==
        "permission_denied");
  CHECK(json::parse(f.control.handle_line(R"({"command":"made-up"})"))["error"]["code"] ==
        "invalid_argument");
}

TEST_CASE("every command of the role table is one the control serves") {
  ControlFixture f;
  for (const std::string& command : listed_control_commands()) {
    CAPTURE(command);
    json reply = f.control.handle({{"command", command}});
    if (reply.value("ok", false)) continue;
    CHECK(reply["error"]["message"].get<std::string>().find("unknown command") == std::string::npos);
  }
  CHECK(required_control_role("snapshot-take") == ControlRole::operator_role);
  CHECK(required_control_role("cbt-map") == ControlRole::read_only);
  CHECK(required_control_role("cbt-raw-map") == ControlRole::read_only);
  CHECK(required_control_role("checkpoint-delete") == ControlRole::operator_role);
  CHECK(required_control_role("origin-attach") == ControlRole::admin);
  CHECK(parse_control_role("operator") == ControlRole::operator_role);
  CHECK_FALSE(parse_control_role("root").has_value());
}

TEST_CASE("a remote caller names difference storage only as new files in the remote storage directory") {
  ControlFixture f;
  TempDir tmp;
  namespace fs = std::filesystem;
  const fs::path dir = tmp.path() / "remote";
  fs::create_directories(dir);
  const std::string victim = tmp.file("precious.txt");
  { std::ofstream(victim) << "precious data"; }
  const std::string inside_existing = (dir / "exists.diff").string();
  { std::ofstream(inside_existing) << "also precious"; }
  fs::create_directory_symlink(tmp.path(), dir / "up");
  const auto create = [&](const ControlCaller& caller, const json& area) {
    json request = {
        {"command", "snapshot-create"}, {"name", "r1"}, {"origins", {"disk0"}}, {"storage", {area}}};
    return json::parse(f.control.handle_line(request.dump(), caller));
  };
  const ControlCaller no_dir{"psk:agent", ControlRole::operator_role, std::string()};
  json refused = create(no_dir, {{"path", (dir / "new.diff").string()}, {"size", 8 << 20}});
  CHECK(refused["error"]["code"] == "permission_denied");
  CHECK(refused["error"]["message"].get<std::string>().find("--remote-storage-dir") != std::string::npos);

  const ControlCaller agent{"psk:agent", ControlRole::operator_role, dir.string()};
  for (const json& area :
       {json{{"path", victim}, {"size", 1 << 20}}, json{{"path", inside_existing}, {"size", 1 << 20}},
        json{{"path", (dir / "up" / "new.diff").string()}, {"size", 1 << 20}},
        json{{"path", "relative.diff"}, {"size", 1 << 20}},
        json{{"path", (dir / "new.diff").string()}, {"offset", 0}, {"length", 1 << 20}}}) {
    CAPTURE(area.dump());
    json reply = create(agent, area);
    CHECK(reply["error"]["code"] == "permission_denied");
  }
  json append = json::parse(f.control.handle_line(
      json{{"command", "snapshot-append-storage"}, {"name", "r1"}, {"path", victim}, {"size", 1 << 20}}
          .dump(),
      agent));
  CHECK(append["error"]["code"] == "permission_denied");
  std::ifstream in(victim);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text == "precious data");
  CHECK(fs::file_size(victim) == 13);

  json made = create(agent, {{"path", (dir / "new.diff").string()}, {"size", 8 << 20}});
  CHECK(made["ok"] == true);
  // A local caller (the Unix socket's owner) is not limited.
  CHECK(json::parse(f.control.handle_line(R"({"command":"snapshot-destroy","name":"r1"})"))["ok"] == true);
}
