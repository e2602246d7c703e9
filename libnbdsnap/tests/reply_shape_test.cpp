// SPDX-License-Identifier: BSD-3-Clause
// reply_shape_test.cpp — a reply whose fields are not of the protocol's types (docs/control.md) fails the
// call with protocol_error, naming the command and the field, before anything reads it: read tolerantly, a
// CBT range of length "64K" was a range of length 0, a change an incremental backup skipped. Replies of the
// protocol's shape, with extra fields or optional fields left out, pass. Each case answers through a fake
// server on a Unix socket, as a real server would.
#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <string>

#include <nlohmann/json.hpp>

#include "fake_server.h"
#include "nbdsnap/client.h"

using namespace nbdsnap::client;
using nlohmann::json;

namespace {

// A server that answers every request with `reply` (a JSON object, "ok" added).
std::function<void(int)> answering(const std::string& reply) {
  json answer = json::parse(reply);
  answer["ok"] = true;
  return fake::replying([text = answer.dump()](const std::string&) { return text; });
}

// What goes wrong when `command` is answered with `reply`: "" if the call succeeds, else the problem the
// protocol_error names (its message between "server's reply to COMMAND: " and "; is the server").
std::string problem_of(const std::string& command, const std::string& reply) {
  fake::Server server(answering(reply));
  Result<Client> client = Client::connect(server.path());
  REQUIRE(client.ok());
  Result<std::string> answer = client->call(json{{"command", command}}.dump());
  if (answer.ok()) return {};
  CHECK(answer.error().code == kProtocolError);
  CHECK(answer.error().errno_value == EPROTO);
  CHECK(client->state() == State::dead);
  const std::string& message = answer.error().message;
  const std::string prefix = "server's reply to " + command + ": ";
  REQUIRE(message.rfind(prefix, 0) == 0);
  const size_t end =
      message.find("; is the server (nbdsnapd or the nbdkit filter) the same version as nbdsnap ");
  REQUIRE(end != std::string::npos);
  return message.substr(prefix.size(), end - prefix.size());
}

}  // namespace

TEST_CASE("a_number_for_the_origins_list_is_named_with_the_type_expected") {
  CHECK(problem_of("origins", R"({"origins":5})") == "'origins' is a number, expected an array");
}

TEST_CASE("the_list_or_object_a_reply_is_made_of_must_be_there") {
  CHECK(problem_of("origins", "{}") == "'origins' is missing");
  CHECK(problem_of("snapshot-info", "{}") == "'snapshot' is missing");
  CHECK(problem_of("events-wait", R"({"last_sequence":3})") == "'events' is missing");
  CHECK(problem_of("stats", R"({"origins":[]})") == "'snapshots' is missing");
}

TEST_CASE("a_field_deep_in_a_list_is_named_with_its_index") {
  CHECK(problem_of("snapshot-list", R"({"snapshots":[{"name":"a"},{"name":"b","images":[{"uri":7}]}]})") ==
        "'snapshots[1].images[0].uri' is a number, expected a string");
  CHECK(problem_of("events-wait", R"({"events":[{"sequence":1},{"type":"x"}]})") ==
        "'events[1].sequence' is missing");
  CHECK(problem_of("cbt-map", R"({"ranges":[{"offset":0,"length":-4096}]})") ==
        "'ranges[0].length' is a number, expected a number of 0 or more");
  CHECK(problem_of("cbt-raw-map", R"({"runs":[[1,"2"]],"next_offset":0})") ==
        "'runs[0]' is an array, expected an array of two numbers of 0 or more");
  CHECK(problem_of("origin-info", R"({"origin":{"name":"d","read_only":"no"}})") ==
        "'origin.read_only' is a string, expected true or false");
  CHECK(problem_of("origins", R"({"origins":[3]})") == "'origins[0]' is a number, expected an object");
}

// What attack11 found read wrong past the first table: a raw run that is not a pair (skipped, moving every
// later run onto other blocks), numbers beyond 64 bits or 2^63 for an integer, members of an object, and
// fields the decoders and the CLI read that the table did not name. The Python package passes the same cases.
TEST_CASE("every_field_a_client_reads_has_its_type_checked_to_the_last_bit") {
  CHECK(problem_of("cbt-raw-map", R"({"runs":[[1,1],[1],[2,255]],"next_offset":0})") ==
        "'runs[1]' is an array, expected an array of two numbers of 0 or more");
  CHECK(problem_of("cbt-raw-map", R"({"runs":[[1,1,7]],"next_offset":0})") ==
        "'runs[0]' is an array, expected an array of two numbers of 0 or more");
  CHECK(problem_of("cbt-raw-map", R"({"runs":[[1,1]]})") == "'next_offset' is missing");
  CHECK(problem_of("cbt-map", R"({"ranges":[{"offset":0,"length":4096.0}]})") ==
        "'ranges[0].length' is a number that is not a 64-bit integer, expected a number of 0 or more");
  CHECK(problem_of("cbt-map", R"({"ranges":[{"offset":0,"length":18446744073709551616}]})") ==
        "'ranges[0].length' is a number that is not a 64-bit integer, expected a number of 0 or more");
  CHECK(problem_of("cbt-info", R"({"cbt":{"checkpoints":{"s0":3,"s1":"5"}}})") ==
        "'cbt.checkpoints.s1' is a string, expected a number of 0 or more");
  CHECK(problem_of("snapshot-info", R"({"snapshot":{"name":"s","taken_unix_ms":9223372036854775808}})") ==
        "'snapshot.taken_unix_ms' is a number, expected an integer");
  CHECK(problem_of("snapshot-info", R"({"snapshot":{"name":"s","images":[{"origin":"d","clients":"3"}]}})") ==
        "'snapshot.images[0].clients' is a string, expected a number of 0 or more");
  CHECK(problem_of("snapshot-info",
                   R"({"snapshot":{"name":"s","origin_errors":[{"origin":"d","errno":"28"}]}})") ==
        "'snapshot.origin_errors[0].errno' is a string, expected an integer");
  CHECK(problem_of("stats",
                   R"({"origins":[],"snapshots":[{"name":"s","images":[{"export":"d@s","reads":"7"}]}]})") ==
        "'snapshots[0].images[0].reads' is a string, expected a number of 0 or more");
  CHECK(problem_of("cbt-reset", "{}") == "'generation' is missing");
  CHECK(problem_of("events-wait", R"({"events":[]})") == "'last_sequence' is missing");
  CHECK(problem_of("cbt-info", R"({"cbt":{"checkpoints":{"s0":3,"s1":5}}})").empty());
  CHECK(problem_of("cbt-raw-map", R"({"runs":[[-0,1]],"next_offset":0})").empty());
}

TEST_CASE("a_typed_raw_map_keeps_a_run_written_as_minus_zero") {
  // -0 is JSON for 0, which nlohmann reads as a signed integer: the decoder skipped the run, and the changed
  // blocks after it were reported at offset 0 instead of 65536 (attack11).
  fake::Server server(answering(R"({"generation":"g","block_size":65536,"device_size":1048576,"offset":0,
      "runs":[[1,1],[-0,200],[2,55]],"more":false,"next_offset":16777216})"));
  Result<Client> client = Client::connect(server.path());
  REQUIRE(client.ok());
  CbtQuery query;
  query.origin = "disk";
  Result<CbtRawMap> map = client->cbt_raw_map(query);
  REQUIRE(map.ok());
  REQUIRE(map->runs.size() == 3);
  CHECK(map->runs[1].number == 0);
  CHECK(map->runs[1].blocks == 200);
  CHECK(map->runs[2].number == 2);
}

TEST_CASE("a_reply_nested_without_bound_is_refused_before_it_is_parsed") {
  // 100,000 levels of an unlisted field crashed call() (its dump() recursed) and so every CLI command.
  for (size_t depth : {size_t(65), size_t(200000)}) {
    const std::string reply =
        R"({"ok":true,"version":"1","x":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
    fake::Server server(fake::replying([reply](const std::string&) { return reply; }));
    Result<Client> client = Client::connect(server.path());
    REQUIRE(client.ok());
    Result<std::string> answer = client->call(R"({"command":"version"})");
    REQUIRE_FALSE(answer.ok());
    CHECK(answer.error().code == kProtocolError);
    CHECK(answer.error().message ==
          "server's reply to version: the reply nests lists and objects deeper than 64 levels");
    CHECK(client->state() == State::dead);
  }
  CHECK(problem_of("version",
                   R"({"version":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
      "x":[[[1]]]})")
            .empty());
}

TEST_CASE("replies_of_the_protocol_pass_with_extra_fields_and_optional_fields_left_out") {
  CHECK(problem_of("origins", R"({"origins":[{"name":"d","size":1048576,"read_only":false,
      "generation":"g","change_number":3,"snapshot":"","clients":0,"uri":"nbd+unix:///d","new_field":[1]}]})")
            .empty());
  CHECK(problem_of("snapshot-info", R"({"snapshot":{"name":"s","state":"taken",
      "origins":["d"],"images":[{"origin":"d","export":"d@s","uri":""}],"storage":[{"path":"/x","offset":0,
      "size":8,"created":true,"sparse":false}],"taken_unix_ms":-1,"origin_errors":[]}})")
            .empty());
  CHECK(problem_of("cbt-raw-map", R"({"runs":[[0,16],[2,1]],"checkpoints":[{"name":"c",
      "number":2,"taken_unix_ms":5}],"more":false,"next_offset":0})")
            .empty());
  CHECK(problem_of("version", R"({"version":"1.0","protocol":1})").empty());
  CHECK(problem_of("snapshot-destroy", "{}").empty());
  CHECK(problem_of("a-command-of-a-newer-server", R"({"x":5})").empty());
}

TEST_CASE("a_typed_call_refuses_a_cbt_range_it_would_have_read_as_no_change") {
  // The second page's range has its length as text: read tolerantly, [1 MiB, +0), and the joined map of a
  // backup agent lacked the change.
  std::atomic<int> pages = 0;
  fake::Server server(fake::replying([&pages](const std::string&) {
    json page = {{"ok", true}, {"generation", "g"}, {"block_size", 65536}, {"device_size", 4 << 20}};
    if (pages++ == 0) {
      page["ranges"] = {{{"offset", 0}, {"length", 65536}}};
      page["more"] = true;
      page["next_offset"] = 1 << 20;
    } else {
      page["ranges"] = {{{"offset", 1 << 20}, {"length", "64K"}}};
      page["more"] = false;
      page["next_offset"] = 4 << 20;
    }
    return page.dump();
  }));
  Result<Client> client = Client::connect(server.path());
  REQUIRE(client.ok());
  Result<CbtMap> map = client->cbt_changed_ranges(CbtQuery{"disk"});
  REQUIRE_FALSE(map.ok());
  CHECK(map.error().code == kProtocolError);
  CHECK(map.error().message.find("server's reply to cbt-map: 'ranges[0].length' is a string, expected a "
                                 "number of 0 or more") == 0);
  CHECK(pages == 2);
}

TEST_CASE("a_reply_that_is_not_an_object_is_refused_before_its_shape_is_looked_at") {
  fake::Server server(fake::replying([](const std::string&) { return std::string("[1]"); }));
  Result<Client> client = Client::connect(server.path());
  REQUIRE(client.ok());
  Result<std::vector<Origin>> origins = client->origins();
  REQUIRE_FALSE(origins.ok());
  CHECK(origins.error().code == kProtocolError);
}
