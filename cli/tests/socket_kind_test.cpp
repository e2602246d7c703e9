// SPDX-License-Identifier: BSD-3-Clause
// socket_kind_test.cpp — the wrong socket from the CLI's side: the URI's socket path, and ControlClient's
// exit codes and messages against libnbdsnap's fake servers (an NBD-like one, a control-like one, a silent
// one).
#include <doctest/doctest.h>

#include <functional>
#include <string>

#include "control_client.h"
#include "exit_codes.h"
#include "fake_server.h"
#include "socket_kind.h"

using namespace nbdsnap::cli;
using namespace std::chrono_literals;

namespace {

ExitCode exit_code_of(const std::function<void()>& call, std::string* message = nullptr) {
  try {
    call();
  } catch (const CliError& error) {
    if (message != nullptr) *message = error.what();
    return error.code();
  }
  return ExitCode::ok;
}

}  // namespace

TEST_CASE("the_socket_of_a_unix_nbd_uri_is_its_decoded_socket_parameter") {
  CHECK(unix_socket_of_uri("nbd+unix:///disk@s?socket=/run/nbdsnap/nbdsnapd.sock") ==
        "/run/nbdsnap/nbdsnapd.sock");
  CHECK(unix_socket_of_uri("nbds+unix://agent@/disk?tls-psk-file=/k&socket=/a%20b.sock") == "/a b.sock");
  CHECK(unix_socket_of_uri("nbd+unix:///?socket=/s.sock#frag") == "/s.sock");
  CHECK(unix_socket_of_uri("nbd://host:10809/disk") == "");
  CHECK(unix_socket_of_uri("nbd+unix:///disk") == "");
  CHECK(unix_socket_of_uri("nbd+unix:///disk?tls=on") == "");
  CHECK(unix_socket_of_uri("not a uri") == "");
}

TEST_CASE("control_client_on_an_nbd_socket_says_so_and_names_the_path") {
  fake::Server nbd(fake::nbd_like);
  std::string message;
  CHECK(exit_code_of([&] { ControlClient(nbd.path(), 5s).request("origins"); }, &message) == ExitCode::usage);
  CHECK(message.find(nbd.path() + ": this is an NBD socket, not a control socket") != std::string::npos);
  CHECK(message.find("--control") != std::string::npos);
}

TEST_CASE("control_client_gives_up_on_a_silent_server_after_its_timeout_plus_the_server_wait") {
  fake::Server quiet(fake::silent);
  ControlClient client(quiet.path(), 200ms);
  std::string message;
  const auto start = std::chrono::steady_clock::now();
  CHECK(exit_code_of(
            [&] {
              client.request("events-wait", {{"timeout_ms", 300}}, 300ms);
            },
            &message) == ExitCode::io_error);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed >= 500ms);
  CHECK(elapsed < 4s);
  CHECK(message.find("no reply to events-wait within 0.2 s (--timeout)") != std::string::npos);
}

TEST_CASE("control_client_maps_a_refusal_to_the_exit_code_of_its_code") {
  fake::Server server(fake::replying([](const std::string& line) {
    return line.find("snapshot-info") != std::string::npos
               ? std::string(
                     R"({"ok":false,"error":{"code":"not_found","errno":2,"message":"no snapshot x"}})")
               : std::string(R"({"ok":false,"error":{"code":"busy","errno":16,"message":"in use"}})");
  }));
  ControlClient client(server.path(), 5s);
  std::string message;
  CHECK(exit_code_of(
            [&] {
              client.request("snapshot-info", {{"name", "x"}});
            },
            &message) == ExitCode::not_found);
  CHECK(message == "no snapshot x (not_found)");
  CHECK(exit_code_of(
            [&] {
              client.request("origin-detach", {{"name", "x"}});
            },
            &message) == ExitCode::server_error);
  CHECK(message == "in use (busy)");
}

TEST_CASE("control_client_still_works_with_a_control_server") {
  fake::Server control(fake::control_like);
  ControlClient client(control.path(), 5s);
  CHECK(client.request("version")["version"] == "test");
  CHECK(client.request("version")["version"] == "test");
}
