// SPDX-License-Identifier: BSD-3-Clause
// stats_test.cpp — Client::stats() decodes the `stats` reply field by field, and the StorageAllocation
// overloads send `sparse` only for files created at a size.
#include <doctest/doctest.h>

#include <mutex>

#include <nlohmann/json.hpp>

#include "fake_server.h"
#include "nbdsnap/client.h"

using namespace nbdsnap::client;
using nlohmann::json;

namespace {

// Answers every request with `reply` (plus "ok") and keeps the last request.
class OneReplyServer {
 public:
  explicit OneReplyServer(json reply)
      : reply_(std::move(reply)), server_(fake::replying([this](const std::string& line) {
          std::scoped_lock lock(mutex_);
          last_ = json::parse(line);
          json out = reply_;
          out["ok"] = true;
          return out.dump();
        })) {}
  const std::string& path() const { return server_.path(); }
  json last_request() {
    std::scoped_lock lock(mutex_);
    return last_;
  }

 private:
  json reply_;
  std::mutex mutex_;
  json last_;
  fake::Server server_;
};

}  // namespace

TEST_CASE("stats_are_decoded_per_origin_snapshot_and_image") {
  OneReplyServer server({{"origins",
                          {{{"name", "disk0"},
                            {"writes", 3},
                            {"bytes_written", 12288},
                            {"reads", 2},
                            {"bytes_read", 8192},
                            {"chunks_copied", 1},
                            {"bytes_copied", 262144},
                            {"copy_on_write_ns", 12345},
                            {"cbt_blocks_marked", 4},
                            {"clients", 1}}}},
                         {"snapshots",
                          {{{"name", "s1"},
                            {"state", "taken"},
                            {"storage_total", 1048576},
                            {"storage_used", 262144},
                            {"storage_free", 786432},
                            {"storage_limit", 0},
                            {"images",
                             {{{"origin", "disk0"},
                               {"export", "disk0@s1"},
                               {"reads", 5},
                               {"bytes_read", 20480},
                               {"clients", 2}}}}}}}});
  Result<Client> client = Client::connect(server.path());
  REQUIRE(client.ok());
  Result<Stats> stats = client->stats();
  REQUIRE(stats.ok());
  CHECK(server.last_request() == json({{"command", "stats"}}));
  REQUIRE(stats->origins.size() == 1);
  const OriginStats& o = stats->origins[0];
  CHECK(o.name == "disk0");
  CHECK(o.writes == 3);
  CHECK(o.bytes_written == 12288);
  CHECK(o.reads == 2);
  CHECK(o.bytes_read == 8192);
  CHECK(o.chunks_copied == 1);
  CHECK(o.bytes_copied == 262144);
  CHECK(o.copy_on_write_ns == 12345);
  CHECK(o.cbt_blocks_marked == 4);
  CHECK(o.clients == 1);
  REQUIRE(stats->snapshots.size() == 1);
  const SnapshotStats& s = stats->snapshots[0];
  CHECK(s.name == "s1");
  CHECK(s.state == "taken");
  CHECK(s.storage_total == 1048576);
  CHECK(s.storage_used == 262144);
  CHECK(s.storage_free == 786432);
  REQUIRE(s.images.size() == 1);
  CHECK(s.images[0].export_name == "disk0@s1");
  CHECK(s.images[0].reads == 5);
  CHECK(s.images[0].bytes_read == 20480);
  CHECK(s.images[0].clients == 2);
}

TEST_CASE("sparse_storage_is_asked_for_only_for_files_created_at_a_size") {
  OneReplyServer server(json{{"snapshot", {{"name", "s"}}}});
  Result<Client> client = Client::connect(server.path());
  REQUIRE(client.ok());
  SnapshotSpec spec;
  spec.name = "s";
  spec.origins = {"a"};
  spec.storage = {{"/var/tmp/new.diff", 1 << 20, false}, {"/dev/sdz", 0, false}};
  REQUIRE(client->snapshot_create(spec, StorageAllocation::sparse).ok());
  CHECK(server.last_request()["storage"] ==
        json({{{"path", "/var/tmp/new.diff"}, {"size", 1 << 20}, {"sparse", true}},
              {{"path", "/dev/sdz"}, {"size", 0}}}));
  REQUIRE(client->snapshot_create(spec).ok());  // allocated: the field is not sent
  CHECK_FALSE(server.last_request()["storage"][0].contains("sparse"));
  REQUIRE(client->snapshot_append_storage("s", {"/var/tmp/more.diff", 4096, false}, StorageAllocation::sparse)
              .ok());
  CHECK(server.last_request() == json({{"command", "snapshot-append-storage"},
                                       {"name", "s"},
                                       {"path", "/var/tmp/more.diff"},
                                       {"size", 4096},
                                       {"sparse", true}}));
}
