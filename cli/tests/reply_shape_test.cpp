// SPDX-License-Identifier: BSD-3-Clause
// reply_shape_test.cpp — ControlClient refuses a reply of the wrong shape (libnbdsnap checks it:
// libnbdsnap/tests/reply_shape_test.cpp) with exit status 4 and code protocol_error, naming the command and
// the field: a number for the origins list printed an empty table with exit status 0.
#include <doctest/doctest.h>

#include <string>

#include "control_client.h"
#include "exit_codes.h"
#include "fake_server.h"

using namespace nbdsnap::cli;
using namespace std::chrono_literals;

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
