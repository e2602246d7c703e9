// SPDX-License-Identifier: BSD-3-Clause
// server_config_test.cpp — command line parsing of nbdsnapd.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <thread>

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
  REQUIRE(parse({"--origin", "disk0=/tmp/a.raw", "--origin-read-only", "base=/tmp/b", "--listen",
                 "unix:/tmp/s.sock", "--listen", "tcp:127.0.0.1:10809", "--control", "/tmp/c.sock",
                 "--state-dir", "/tmp/st", "--threads", "2", "--chunk-min-shift", "16"},
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

TEST_CASE("io_threads_default_to_one_per_cpu_at_most_16_and_an_explicit_count_is_kept") {
  ServerConfig defaults;
  REQUIRE(parse({"--origin", "d=/tmp/d.raw"}, defaults) == ConfigOutcome::run);
  const unsigned cpus = std::thread::hardware_concurrency();
  CHECK(defaults.io_threads == std::clamp(cpus, 1u, 16u));
  ServerConfig one;
  REQUIRE(parse({"--origin", "d=/tmp/d.raw", "--io-threads", "1"}, one) == ConfigOutcome::run);
  CHECK(one.io_threads == 1);
  ServerConfig many;
  REQUIRE(parse({"--origin", "d=/tmp/d.raw", "--io-threads", "256"}, many) == ConfigOutcome::run);
  CHECK(many.io_threads == 256);
}

TEST_CASE("threads_max_defaults_to_64_or_twice_threads_and_an_explicit_count_is_kept") {
  ServerConfig defaults;
  REQUIRE(parse({"--origin", "d=/tmp/d.raw"}, defaults) == ConfigOutcome::run);
  CHECK(defaults.threads == 4);
  CHECK(defaults.threads_max == 64);
  ServerConfig many;
  REQUIRE(parse({"--origin", "d=/tmp/d.raw", "--threads", "100"}, many) == ConfigOutcome::run);
  CHECK(many.threads_max == 200);
  ServerConfig given;
  REQUIRE(parse({"--origin", "d=/tmp/d.raw", "--threads", "2", "--threads-max", "3"}, given) ==
          ConfigOutcome::run);
  CHECK(given.threads_max == 3);
  ServerConfig below;
  CHECK(parse({"--origin", "d=/tmp/d.raw", "--threads", "8", "--threads-max", "8"}, below) ==
        ConfigOutcome::exit_failure);
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

TEST_CASE("cache_defaults_to_writeback_and_none_opens_origins_and_storage_with_o_direct") {
  ServerConfig defaults;
  REQUIRE(parse({}, defaults) == ConfigOutcome::run);
  CHECK(defaults.cache == FileCache::writeback);
  CHECK(defaults.engine.storage_cache == FileCache::writeback);
  ServerConfig direct;
  REQUIRE(parse({"--cache", "none"}, direct) == ConfigOutcome::run);
  CHECK(direct.cache == FileCache::none);
  CHECK(direct.engine.storage_cache == FileCache::none);
  ServerConfig bad;
  std::string err;
  CHECK(parse({"--cache", "directsync"}, bad, &err) == ConfigOutcome::exit_failure);
  CHECK(err.find("--cache 'directsync' is not a cache mode") != std::string::npos);
}

TEST_CASE("every_tuning_option_of_the_engine_is_an_option_with_its_bounds") {
  struct Case {
    const char* option;
    const char* good;
    const char* bad;
    const char* message;
  };
  const Case cases[] = {
      {"--chunk-min-shift", "16", "11", "--chunk-min-shift 11 is out of range: it must be 12..30"},
      {"--chunk-max-shift", "28", "31", "--chunk-max-shift 31 is out of range: it must be 12..30"},
      {"--chunk-max-count-shift", "21", "64", "--chunk-max-count-shift 64 is out of range: it must be 1..63"},
      {"--tracking-block-min-shift", "12", "8",
       "--tracking-block-min-shift 8 is out of range: it must be 9..30"},
      {"--tracking-block-max-shift", "24", "31",
       "--tracking-block-max-shift 31 is out of range: it must be 9..30"},
      {"--tracking-block-max-count", "65536", "0",
       "--tracking-block-max-count 0 is out of range: it must be 1..4294967296"},
      {"--chunk-buffer-budget", "1G", "65G", "--chunk-buffer-budget 65G is out of range: it must be 0..64G"},
      {"--low-space-threshold", "0", "2P", "--low-space-threshold 2P is out of range: it must be 0..1P"},
      {"--copy-io-size", "1M", "48K",
       "--copy-io-size 48K is not a power of two: it must be 4K..64M, a power of two"},
      {"--checkpoints-kept", "32", "129", "--checkpoints-kept 129 is out of range: it must be 2..128"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.option);
    ServerConfig good;
    std::string err;
    CHECK(parse({c.option, c.good}, good, &err) == ConfigOutcome::run);
    CHECK(err.empty());
    ServerConfig bad;
    CHECK(parse({c.option, c.bad}, bad, &err) == ConfigOutcome::exit_failure);
    CHECK(err == std::string("nbdsnapd: ") + c.message + "\n");
  }
}

TEST_CASE("tuning_options_set_the_engine_configuration") {
  ServerConfig c;
  REQUIRE(parse({"--chunk-min-shift", "16", "--chunk-max-shift", "24", "--chunk-max-count-shift", "30",
                 "--tracking-block-min-shift", "12", "--tracking-block-max-shift", "20",
                 "--tracking-block-max-count", "4096", "--chunk-buffer-budget", "16M",
                 "--low-space-threshold", "1G", "--copy-io-size", "256K"},
                c) == ConfigOutcome::run);
  CHECK(c.engine.sizing.chunk_minimum_shift == 16);
  CHECK(c.engine.sizing.chunk_maximum_shift == 24);
  CHECK(c.engine.sizing.chunk_maximum_count_shift == 30);
  CHECK(c.engine.sizing.tracking_block_minimum_shift == 12);
  CHECK(c.engine.sizing.tracking_block_maximum_shift == 20);
  CHECK(c.engine.sizing.tracking_block_maximum_count == 4096);
  CHECK(c.engine.chunk_buffer_budget == (16ull << 20));
  CHECK(c.engine.low_space_threshold == (1ull << 30));
  CHECK(c.engine.copy_io_size == (256ull << 10));
  ServerConfig defaults;
  REQUIRE(parse({}, defaults) == ConfigOutcome::run);
  CHECK(defaults.engine.sizing.chunk_maximum_count_shift == 40);
  CHECK(defaults.engine.copy_io_size == (4ull << 20));
}

TEST_CASE("tuning_values_that_are_not_numbers_or_contradict_each_other_are_refused_by_name") {
  ServerConfig c;
  std::string err;
  CHECK(parse({"--chunk-min-shift", "-1"}, c, &err) == ConfigOutcome::exit_failure);
  CHECK(err == "nbdsnapd: --chunk-min-shift -1: expected a whole number 12..30\n");
  ServerConfig d;
  CHECK(parse({"--chunk-buffer-budget", "1.5G"}, d, &err) == ConfigOutcome::exit_failure);
  CHECK(err.find("nbdsnapd: --chunk-buffer-budget 1.5G: ") == 0);
  ServerConfig e;
  CHECK(parse({"--chunk-min-shift", "22", "--chunk-max-shift", "20"}, e, &err) ==
        ConfigOutcome::exit_failure);
  CHECK(err ==
        "nbdsnapd: --chunk-max-shift 20 is below --chunk-min-shift 22: raise --chunk-max-shift to at least "
        "22 or lower --chunk-min-shift\n");
}

TEST_CASE("tuning_options_are_keys_of_the_config_file_too") {
  char path[] = "/tmp/nbdsnapd-config-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text = "chunk-max-shift = 22\ncopy-io-size = 64K\ntracking-block-max-count = 1024\n";
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  ServerConfig c;
  CHECK(parse({"--config", path}, c) == ConfigOutcome::run);
  CHECK(c.engine.sizing.chunk_maximum_shift == 22);
  CHECK(c.engine.copy_io_size == (64ull << 10));
  CHECK(c.engine.sizing.tracking_block_maximum_count == 1024);
  unlink(path);
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
  CHECK(err == "nbdsnapd: --checkpoints-kept 200 is out of range: it must be 2..128\n");
}

TEST_CASE("tls_access_and_remote_control_options_are_checked_together") {
  ServerConfig c;
  REQUIRE(parse({"--tls", "require", "--tls-psk", "/k.psk", "--allow", "disk0@* psk:agent1", "--allow",
                 "* dn:CN=backup agent,O=Example", "--control-listen", "tcp:127.0.0.1:10810",
                 "--control-role", "operator psk:agent1", "--control-group", "backup"},
                c) == ConfigOutcome::run);
  CHECK(c.security.tls == TlsMode::require);
  CHECK(c.security.tls_options.psk_file == "/k.psk");
  REQUIRE(c.security.access.rules.size() == 2);
  CHECK(c.security.access.rules[1].identity == "dn:CN=backup agent,O=Example");
  CHECK_FALSE(c.security.access.tcp_origins);
  REQUIRE(c.security.control_listen.has_value());
  CHECK(c.security.control_listen->port == 10810);
  PeerIdentity agent;
  agent.psk_username = "agent1";
  CHECK(c.security.control_role_of(agent) == ControlRole::operator_role);
  CHECK_FALSE(c.security.control_role_of(PeerIdentity{}).has_value());
  CHECK(c.security.control_group == "backup");

  std::string err;
  ServerConfig d;
  CHECK(parse({"--tls", "require"}, d, &err) == ConfigOutcome::exit_failure);
  CHECK(err.find("needs credentials") != std::string::npos);
  CHECK(parse({"--tls-psk", "/k.psk"}, d, &err) == ConfigOutcome::exit_failure);
  CHECK(err.find("unused") != std::string::npos);
  CHECK(parse({"--tls", "maybe"}, d, &err) == ConfigOutcome::exit_failure);
  CHECK(parse({"--tls", "on", "--tls-psk", "/k", "--tls-verify-peer"}, d, &err) ==
        ConfigOutcome::exit_failure);
  CHECK(err.find("--tls-verify-peer needs --tls-certificates") != std::string::npos);
  CHECK(parse({"--allow", "disk0"}, d, &err) == ConfigOutcome::exit_failure);
  CHECK(parse({"--allow", "disk0 agent1"}, d, &err) == ConfigOutcome::exit_failure);
  CHECK(err.find("psk:NAME") != std::string::npos);
  CHECK(parse({"--tls-psk", "/k", "--control-listen", "tcp:127.0.0.1:1"}, d, &err) ==
        ConfigOutcome::exit_failure);
  CHECK(err.find("--control-role") != std::string::npos);
  CHECK(parse({"--tls-psk", "/k", "--control-listen", "unix:/x", "--control-role", "admin *"}, d, &err) ==
        ConfigOutcome::exit_failure);
  CHECK(parse({"--control-role", "root psk:a"}, d, &err) == ConfigOutcome::exit_failure);
}

TEST_CASE("origins_are_refused_over_tcp_unless_tcp_origins_and_allow_rules_name_who") {
  AccessPolicy policy;
  PeerIdentity agent;
  agent.psk_username = "agent1";
  CHECK(policy.refusal("disk0", agent, /*over_tcp=*/false).empty());
  CHECK(policy.refusal("disk0@s1", agent, true).empty());
  CHECK(policy.refusal("disk0", agent, true).find("--tcp-origins") != std::string::npos);
  policy.tcp_origins = true;
  CHECK(policy.refusal("disk0", agent, true).empty());
  policy.rules.push_back({"disk0@*", "psk:agent1"});
  CHECK(policy.refusal("disk0@s1", agent, true).empty());
  CHECK(policy.refusal("disk1@s1", agent, true) ==
        "psk:agent1 may not open export 'disk1@s1': no allow rule names it (nbdsnapd allow)");
  CHECK_FALSE(policy.refusal("disk0", agent, true).empty());
}

TEST_CASE("remote_only_options_without_control_listen_are_warned_about_by_name_and_file_line") {
  ServerConfig c;
  REQUIRE(parse({"--control-idle-timeout", "60", "--control-role", "operator psk:a"}, c) ==
          ConfigOutcome::run);
  REQUIRE(c.security.warnings.size() == 2);
  CHECK(c.security.warnings[0] ==
        "--control-role is ignored: it only applies with --control-listen (the remote control listener)");
  CHECK(
      c.security.warnings[1].starts_with("--control-idle-timeout is ignored: it only applies with "
                                         "--control-listen"));

  char path[] = "/tmp/nbdsnapd-config-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text = "# remote\ncontrol-max-handshakes = 16\n";
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  ServerConfig f;
  CHECK(parse({"--config", path}, f) == ConfigOutcome::run);
  REQUIRE(f.security.warnings.size() == 1);
  CHECK(f.security.warnings[0].starts_with(std::string(path) + ":2: --control-max-handshakes is ignored"));
  unlink(path);

  // With the listener, nothing to say; and the defaults alone say nothing either.
  ServerConfig r;
  REQUIRE(parse({"--tls-psk", "/k", "--control-listen", "tcp:127.0.0.1:1", "--control-role", "admin psk:a",
                 "--control-idle-timeout", "60", "--control-max-handshakes", "8"},
                r) == ConfigOutcome::run);
  CHECK(r.security.warnings.empty());
  CHECK(r.security.control_max_handshakes == 8);
  ServerConfig d;
  REQUIRE(parse({}, d) == ConfigOutcome::run);
  CHECK(d.security.warnings.empty());
  CHECK(d.security.control_max_handshakes == 128);
}
