// SPDX-License-Identifier: BSD-3-Clause
// reply_shape_test.cpp — replies of the wrong shape are named, by command and field, before a command reads
// them (a number for the origins list printed an empty table with exit status 0); replies of the protocol's
// shape, with extra fields or fields left out, pass; ControlClient refuses a wrongly shaped reply of a fake
// server with exit status 4 and code protocol_error.
#include <doctest/doctest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "control_client.h"
#include "exit_codes.h"
#include "fake_server.h"
#include "reply_shape.h"

using namespace nbdsnap::cli;
using namespace std::chrono_literals;
using nlohmann::json;

TEST_CASE("a_number_for_the_origins_list_is_named_with_the_type_expected") {
  CHECK(reply_shape_problem("origins", json::parse(R"({"origins":5})")) ==
        "'origins' is a number, expected an array");
}

TEST_CASE("the_list_or_object_a_reply_is_made_of_must_be_there") {
  CHECK(reply_shape_problem("origins", json::object()) == "'origins' is missing");
  CHECK(reply_shape_problem("snapshot-info", json::object()) == "'snapshot' is missing");
  CHECK(reply_shape_problem("events-wait", json::parse(R"({"last_sequence":3})")) == "'events' is missing");
  CHECK(reply_shape_problem("stats", json::parse(R"({"origins":[]})")) == "'snapshots' is missing");
}

TEST_CASE("a_field_deep_in_a_list_is_named_with_its_index") {
  CHECK(
      reply_shape_problem("snapshot-list",
                          json::parse(R"({"snapshots":[{"name":"a"},{"name":"b","images":[{"uri":7}]}]})")) ==
      "'snapshots[1].images[0].uri' is a number, expected a string");
  CHECK(reply_shape_problem("events-wait", json::parse(R"({"events":[{"sequence":1},{"type":"x"}]})")) ==
        "'events[1].sequence' is missing");
  CHECK(reply_shape_problem("cbt-map", json::parse(R"({"ranges":[{"offset":0,"length":-4096}]})")) ==
        "'ranges[0].length' is a number, expected a number of 0 or more");
  CHECK(reply_shape_problem("cbt-raw-map", json::parse(R"({"runs":[[1,"2"]]})")) ==
        "'runs[0][1]' is a string, expected a number of 0 or more");
  CHECK(reply_shape_problem("origin-info", json::parse(R"({"origin":{"name":"d","read_only":"no"}})")) ==
        "'origin.read_only' is a string, expected true or false");
  CHECK(reply_shape_problem("origins", json::parse(R"({"origins":[3]})")) ==
        "'origins[0]' is a number, expected an object");
}

TEST_CASE("replies_of_the_protocol_pass_with_extra_fields_and_optional_fields_left_out") {
  CHECK(
      reply_shape_problem("origins", json::parse(R"({"origins":[{"name":"d","size":1048576,"read_only":false,
      "generation":"g","change_number":3,"snapshot":"","clients":0,"uri":"nbd+unix:///d","new_field":[1]}]})"))
          .empty());
  CHECK(reply_shape_problem("snapshot-info", json::parse(R"({"snapshot":{"name":"s","state":"taken",
      "origins":["d"],"images":[{"origin":"d","export":"d@s","uri":""}],"storage":[{"path":"/x","offset":0,
      "size":8,"created":true,"sparse":false}],"taken_unix_ms":-1,"origin_errors":[]}})"))
            .empty());
  CHECK(reply_shape_problem("cbt-raw-map", json::parse(R"({"runs":[[0,16],[2,1]],"checkpoints":[{"name":"c",
      "number":2,"taken_unix_ms":5}],"more":false,"next_offset":0})"))
            .empty());
  CHECK(reply_shape_problem("version", json::parse(R"({"version":"1.0","protocol":1})")).empty());
  CHECK(reply_shape_problem("snapshot-destroy", json::object()).empty());
  CHECK(reply_shape_problem("a-command-of-a-newer-server", json::parse(R"({"x":5})")).empty());
}

TEST_CASE("a_reply_that_is_not_an_object_is_named") {
  CHECK(reply_shape_problem("origins", json::array()) == "the reply is an array, expected an object");
}

TEST_CASE("control_client_refuses_a_wrongly_shaped_reply_with_status_4_and_protocol_error") {
  fake::Server server(
      fake::replying([](const std::string&) { return std::string(R"({"ok":true,"origins":5})"); }));
  ControlClient client(server.path(), 5s);
  try {
    client.request("origins");
    FAIL("a wrongly shaped reply was accepted");
  } catch (const CliError& error) {
    CHECK(error.code() == ExitCode::io_error);
    CHECK(error.detail().code == "protocol_error");
    CHECK(std::string(error.what())
              .find("server's reply to origins: 'origins' is a number, expected an array; "
                    "is the server (nbdsnapd or the nbdkit filter) the same version as "
                    "nbdsnap ") == 0);
  }
}
