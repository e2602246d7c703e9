// server_config_test.cpp — command line parsing of nbdsnapd.
#include <doctest/doctest.h>

#include <sstream>

#include "server_config.h"

using namespace nbdsnap;

namespace {
ConfigOutcome parse(std::vector<const char*> args, ServerConfig& config, std::string* err_text = nullptr) {
  args.insert(args.begin(), "nbdsnapd");
  std::ostringstream out, err;
  auto outcome = parse_server_config(int(args.size()), args.data(), config, out, err);
  if (err_text) *err_text = err.str();
  return outcome;
}
}  // namespace

TEST_CASE("origins_listeners_and_control_come_from_the_command_line") {
  ServerConfig c;
  REQUIRE(parse({"--origin", "disk0=/tmp/a.raw", "--origin-read-only", "base=/tmp/b", "--listen", "unix:/tmp/s.sock",
                 "--listen", "tcp:127.0.0.1:10809", "--control", "/tmp/c.sock", "--state-dir", "/tmp/st",
                 "--threads", "2", "--chunk-min-shift", "16"},
                c) == ConfigOutcome::run);
  REQUIRE(c.origins.size() == 2);
  CHECK(c.origins[0].name == "disk0");
  CHECK(c.origins[0].path == "/tmp/a.raw");
  CHECK(c.origins[1].read_only);
  REQUIRE(c.listen.size() == 2);
  CHECK(c.listen[1].kind == ListenAddress::Kind::tcp);
  CHECK(c.listen[1].port == 10809);
  CHECK(c.control_path == "/tmp/c.sock");
  CHECK(c.engine.state_dir == "/tmp/st");
  CHECK(c.threads == 2);
  CHECK(c.engine.sizing.chunk_minimum_shift == 16);
}

TEST_CASE("bad_origin_and_listen_values_are_refused") {
  ServerConfig c;
  CHECK(parse({"--origin", "nopath"}, c) == ConfigOutcome::exit_failure);
  ServerConfig d;
  CHECK(parse({"--listen", "tcp:host"}, d) == ConfigOutcome::exit_failure);
  ServerConfig e;
  CHECK(parse({"--origin", "a@b=/x"}, e) == ConfigOutcome::exit_failure);
  ServerConfig f;
  CHECK(parse({"--bogus"}, f) == ConfigOutcome::exit_failure);
}

TEST_CASE("help_and_version_exit_successfully") {
  ServerConfig c;
  CHECK(parse({"--help"}, c) == ConfigOutcome::exit_success);
  CHECK(parse({"--version"}, c) == ConfigOutcome::exit_success);
}

TEST_CASE("connection_limits_default_to_1000_clients_and_a_10_second_handshake_and_0_turns_them_off") {
  ServerConfig defaults;
  REQUIRE(parse({}, defaults) == ConfigOutcome::run);
  CHECK(defaults.max_connections == 1000);
  CHECK(defaults.handshake_timeout_seconds == 10);
  ServerConfig off;
  REQUIRE(parse({"--max-connections", "0", "--handshake-timeout", "0"}, off) == ConfigOutcome::run);
  CHECK(off.max_connections == 0);
  CHECK(off.handshake_timeout_seconds == 0);
  ServerConfig bad;
  CHECK(parse({"--handshake-timeout", "-1"}, bad) == ConfigOutcome::exit_failure);
}

TEST_CASE("checkpoints_kept_defaults_to_16_and_takes_2_to_128") {
  ServerConfig defaults;
  REQUIRE(parse({}, defaults) == ConfigOutcome::run);
  CHECK(defaults.engine.checkpoints_kept == 16);
  for (const char* good : {"2", "128"}) {
    ServerConfig config;
    REQUIRE(parse({"--checkpoints-kept", good}, config) == ConfigOutcome::run);
    CHECK(config.engine.checkpoints_kept == std::stoul(good));
  }
  for (const char* bad : {"1", "129", "0", "-1", "16x"}) {
    CAPTURE(bad);
    ServerConfig config;
    std::string err;
    CHECK(parse({"--checkpoints-kept", bad}, config, &err) == ConfigOutcome::exit_failure);
    CHECK(err.find("checkpoints-kept") != std::string::npos);
  }
  ServerConfig config;
  std::string err;
  REQUIRE(parse({"--checkpoints-kept", "200"}, config, &err) == ConfigOutcome::exit_failure);
  CHECK(err == "nbdsnapd: --checkpoints-kept 200: must be 2..128 checkpoints (default 16)\n");
}
