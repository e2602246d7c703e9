// SPDX-License-Identifier: BSD-3-Clause
// socket_probe_test.cpp — recognising each protocol's greeting: the pure recognisers, and
// probe_socket_kind() against an NBD-like server, a control-like one and a silent one.
#include <doctest/doctest.h>

#include "fake_server.h"
#include "nbdsnap/socket_probe.h"

using namespace nbdsnap::client;
using namespace std::chrono_literals;

namespace {
Deadline in(std::chrono::milliseconds budget) {
  return std::chrono::steady_clock::now() + budget;
}
}  // namespace

TEST_CASE("an_nbd_greeting_is_recognised_from_its_first_8_bytes") {
  CHECK(is_nbd_greeting(fake::kNbdGreeting));
  CHECK(is_nbd_greeting("NBDMAGIC"));
  CHECK(is_nbd_greeting(std::string("NBDMAGIC\x00\x42\x02\x81\x86\x12\x53", 15)));  // oldstyle
  CHECK_FALSE(is_nbd_greeting("NBDMAGI"));                                          // too short to tell
  CHECK_FALSE(is_nbd_greeting(""));
  CHECK_FALSE(is_nbd_greeting("{\"ok\":true}"));
  CHECK_FALSE(is_nbd_greeting("nbdmagic"));
}

TEST_CASE("a_control_reply_is_a_json_object_with_a_boolean_ok") {
  CHECK(is_control_reply("{\"ok\":true,\"version\":\"1\"}"));
  CHECK(is_control_reply("{\"ok\":false,\"error\":{\"code\":\"invalid\",\"message\":\"x\"}}"));
  CHECK_FALSE(is_control_reply("{\"ok\":\"yes\"}"));
  CHECK_FALSE(is_control_reply("{\"version\":\"1\"}"));
  CHECK_FALSE(is_control_reply("[true]"));
  CHECK_FALSE(is_control_reply(fake::kNbdGreeting));
  CHECK_FALSE(is_control_reply(""));
}

TEST_CASE("probe_tells_an_nbd_socket_a_control_socket_and_a_silent_one_apart_within_its_deadline") {
  fake::Server nbd(fake::nbd_like), control(fake::control_like), quiet(fake::silent);
  CHECK(probe_socket_kind(nbd.path(), 1s, in(5s)) == SocketKind::nbd);
  CHECK(probe_socket_kind(control.path(), 200ms, in(5s)) == SocketKind::control);
  const auto start = std::chrono::steady_clock::now();
  CHECK(probe_socket_kind(quiet.path(), 100ms, in(300ms)) == SocketKind::unknown);
  CHECK(std::chrono::steady_clock::now() - start < 3s);
  CHECK(probe_socket_kind(nbd.path() + ".missing", 100ms, in(1s)) == SocketKind::unknown);
}
