// filter_config_test.cpp — the filter's nbdsnap-* parameters: parsing, checking, default storage.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "filter_config.h"

using nbdsnap::Errc;
using nbdsnap::FilterConfig;

namespace {
std::string temp_dir() {
  char pattern[] = "/tmp/nbdsnap-filter-config-XXXXXX";
  REQUIRE(mkdtemp(pattern) != nullptr);
  return pattern;
}
}  // namespace

TEST_CASE("relative_paths_are_made_absolute_against_the_starting_directory") {
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-control", "ctl.sock"));
  char cwd[4096];
  REQUIRE(getcwd(cwd, sizeof cwd) != nullptr);
  CHECK(config.control_socket == std::string(cwd) + "/ctl.sock");
  REQUIRE(config.apply("nbdsnap-state-dir", "/var/lib/nbdsnap"));
  CHECK(config.state_dir == "/var/lib/nbdsnap");
}

TEST_CASE("unknown_parameters_with_the_prefix_are_refused") {
  FilterConfig config;
  auto s = config.apply("nbdsnap-stroage", "/x");
  CHECK(s.code() == Errc::invalid_argument);
  CHECK(s.message().find("unknown parameter nbdsnap-stroage") != std::string::npos);
}

TEST_CASE("sizes_and_shifts_are_checked") {
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-storage-limit", "2G"));
  CHECK(config.storage_limit == (2ull << 30));
  CHECK_FALSE(config.apply("nbdsnap-storage-limit", "lots"));
  REQUIRE(config.apply("nbdsnap-chunk-min-shift", "16"));
  CHECK(config.sizing.chunk_minimum_shift == 16);
  REQUIRE(config.apply("nbdsnap-tracking-min-shift", "20"));
  CHECK(config.sizing.tracking_block_minimum_shift == 20);
  CHECK_FALSE(config.apply("nbdsnap-chunk-min-shift", "3"));
  CHECK_FALSE(config.apply("nbdsnap-chunk-min-shift", "16x"));
  CHECK_FALSE(config.apply("nbdsnap-tracking-min-shift", "99"));
}

TEST_CASE("default_origin_must_be_a_valid_origin_name") {
  FilterConfig config;
  CHECK(config.default_origin == "default");
  REQUIRE(config.apply("nbdsnap-default-origin", "ram"));
  CHECK(config.default_origin == "ram");
  CHECK_FALSE(config.apply("nbdsnap-default-origin", "a@b"));
}

TEST_CASE("default_storage_in_a_directory_gives_each_snapshot_its_own_file") {
  std::string dir = temp_dir();
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-storage", dir + ":64M"));
  REQUIRE(config.complete());
  CHECK(config.storage_is_directory);
  auto spec = config.default_storage_for("nightly");
  CHECK(spec.path == dir + "/nightly.nbdsnap-diff");
  CHECK(spec.size == (64ull << 20));
  rmdir(dir.c_str());
}

TEST_CASE("default_storage_directory_needs_a_size") {
  std::string dir = temp_dir();
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-storage", dir));
  CHECK(config.complete().code() == Errc::invalid_argument);
  rmdir(dir.c_str());
}

TEST_CASE("default_storage_file_is_used_as_given") {
  std::string dir = temp_dir();
  std::string file = dir + "/diff.img";
  std::ofstream(file).close();
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-storage", file));
  REQUIRE(config.complete());
  CHECK_FALSE(config.storage_is_directory);
  auto spec = config.default_storage_for("s");
  CHECK(spec.path == file);
  CHECK(spec.size == 0);
  unlink(file.c_str());
  rmdir(dir.c_str());
}

TEST_CASE("default_storage_that_does_not_exist_is_refused_with_both_ways_out") {
  std::string dir = temp_dir();
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-storage", dir + "/dif:64M"));  // a misspelt directory
  auto s = config.complete();
  CHECK(s.code() == Errc::not_found);
  CHECK(s.message().find("nbdsnap-storage=" + dir + "/dif does not exist") != std::string::npos);
  CHECK(s.message().find("mkdir " + dir + "/dif") != std::string::npos);
  CHECK(s.message().find("fallocate -l SIZE " + dir + "/dif") != std::string::npos);
  rmdir(dir.c_str());
}

TEST_CASE("default_storage_or_state_dir_the_plugin_serves_is_refused") {
  std::string dir = temp_dir();
  std::string disk = dir + "/disk.img";
  std::ofstream(disk).close();
  FilterConfig served_file;
  served_file.note_plugin_parameter("file", disk);  // `nbdkit file DISK`: the magic key
  REQUIRE(served_file.apply("nbdsnap-storage", disk));
  auto s = served_file.complete();
  CHECK(s.code() == Errc::already_exists);
  CHECK(s.message().find("nbdsnap-storage: difference storage " + disk + " is " + disk) != std::string::npos);

  FilterConfig served_dir;
  served_dir.note_plugin_parameter("dir", dir);
  REQUIRE(served_dir.apply("nbdsnap-storage", dir + ":64M"));
  CHECK(served_dir.complete().code() == Errc::invalid_argument);

  FilterConfig state_in_served_dir;
  state_in_served_dir.note_plugin_parameter("dir", dir);
  REQUIRE(state_in_served_dir.apply("nbdsnap-state-dir", dir));
  auto state = state_in_served_dir.complete();
  CHECK(state.code() == Errc::invalid_argument);
  CHECK(state.message().find("nbdsnap-state-dir " + dir + " is the directory the plugin serves (dir=") !=
        std::string::npos);

  FilterConfig other_keys;
  other_keys.note_plugin_parameter("size", disk);
  REQUIRE(other_keys.apply("nbdsnap-storage", disk));
  CHECK(other_keys.complete());
  unlink(disk.c_str());
  rmdir(dir.c_str());
}

TEST_CASE("state_dir_must_exist") {
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-state-dir", "/nonexistent/nbdsnap-state"));
  CHECK(config.complete().code() == Errc::not_found);
}

TEST_CASE("checkpoints_kept_defaults_to_16_and_takes_2_to_128") {
  FilterConfig config;
  CHECK(config.checkpoints_kept == 16);
  REQUIRE(config.apply("nbdsnap-checkpoints-kept", "2"));
  CHECK(config.checkpoints_kept == 2);
  REQUIRE(config.apply("nbdsnap-checkpoints-kept", "128"));
  CHECK(config.checkpoints_kept == 128);
  for (const char* bad : {"1", "129", "0", "-1", "", "16x", "99999999999999999999"}) {
    CAPTURE(bad);
    auto s = config.apply("nbdsnap-checkpoints-kept", bad);
    CHECK(s.code() == Errc::invalid_argument);
    CHECK(s.message() == std::string("nbdsnap-checkpoints-kept=") + bad + ": must be 2..128 checkpoints (default 16)");
  }
  CHECK(config.checkpoints_kept == 128);
}
