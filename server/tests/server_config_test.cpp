// server_config_test.cpp — command line parsing of nbdsnapd.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
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
      {"--tracking-block-min-shift", "12", "8", "--tracking-block-min-shift 8 is out of range: it must be 9..30"},
      {"--tracking-block-max-shift", "24", "31", "--tracking-block-max-shift 31 is out of range: it must be 9..30"},
      {"--tracking-block-max-count", "65536", "0",
       "--tracking-block-max-count 0 is out of range: it must be 1..4294967296"},
      {"--chunk-buffer-budget", "1G", "65G", "--chunk-buffer-budget 65G is out of range: it must be 0..64G"},
      {"--low-space-threshold", "0", "2P", "--low-space-threshold 2P is out of range: it must be 0..1P"},
      {"--copy-io-size", "1M", "48K", "--copy-io-size 48K is not a power of two: it must be 4K..64M, a power of two"},
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
                 "--tracking-block-max-count", "4096", "--chunk-buffer-budget", "16M", "--low-space-threshold",
                 "1G", "--copy-io-size", "256K"},
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
  CHECK(parse({"--chunk-min-shift", "22", "--chunk-max-shift", "20"}, e, &err) == ConfigOutcome::exit_failure);
  CHECK(err == "nbdsnapd: --chunk-max-shift 20 is below --chunk-min-shift 22: raise --chunk-max-shift to at least "
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
