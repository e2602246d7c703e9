// SPDX-License-Identifier: BSD-3-Clause
// filter_config_test.cpp — the filter's nbdsnap-* parameters: parsing, checking, default storage.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>

#include "filter_config.h"

using nbdsnap::Errc;
using nbdsnap::FileCache;
using nbdsnap::FilterConfig;
using nbdsnap::ReflinkMode;
using nbdsnap::Status;

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

TEST_CASE("storage_cache_none_opens_the_filters_storage_with_o_direct_and_a_bad_mode_is_refused") {
  FilterConfig config;
  CHECK(config.tuning.storage_cache == FileCache::writeback);
  REQUIRE(config.apply("nbdsnap-storage-cache", "none"));
  CHECK(config.tuning.storage_cache == FileCache::none);
  FilterConfig other;
  const Status bad = other.apply("nbdsnap-storage-cache", "direct");
  CHECK(bad.code() == Errc::invalid_argument);
  CHECK(bad.message().find("nbdsnap-storage-cache 'direct' is not a cache mode") != std::string::npos);
}

TEST_CASE("reflink_off_is_accepted_and_a_bad_mode_is_refused_naming_the_parameter") {
  FilterConfig config;
  CHECK(config.tuning.reflink == ReflinkMode::automatic);
  REQUIRE(config.apply("nbdsnap-reflink", "off"));
  CHECK(config.tuning.reflink == ReflinkMode::off);
  FilterConfig other;
  const Status bad = other.apply("nbdsnap-reflink", "always");
  CHECK(bad.code() == Errc::invalid_argument);
  CHECK(bad.message().find("nbdsnap-reflink 'always' is not a reflink mode") != std::string::npos);
}

TEST_CASE("sizes_and_shifts_are_checked") {
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-storage-limit", "2G"));
  CHECK(config.storage_limit == (2ull << 30));
  CHECK_FALSE(config.apply("nbdsnap-storage-limit", "lots"));
  REQUIRE(config.apply("nbdsnap-chunk-min-shift", "16"));
  CHECK(config.tuning.sizing.chunk_minimum_shift == 16);
  REQUIRE(config.apply("nbdsnap-tracking-block-min-shift", "20"));
  CHECK(config.tuning.sizing.tracking_block_minimum_shift == 20);
  CHECK_FALSE(config.apply("nbdsnap-chunk-min-shift", "16x"));
  CHECK(config.complete());
}

TEST_CASE("every_tuning_option_of_the_engine_is_a_parameter_with_the_bounds_nbdsnapd_has") {
  struct Case {
    const char* key;
    const char* good;
    const char* bad;
    const char* message;
  };
  const Case cases[] = {
      {"nbdsnap-chunk-min-shift", "16", "11",
       "nbdsnap-chunk-min-shift=11 is out of range: it must be 12..30"},
      {"nbdsnap-chunk-max-shift", "28", "31",
       "nbdsnap-chunk-max-shift=31 is out of range: it must be 12..30"},
      {"nbdsnap-chunk-max-count-shift", "21", "64",
       "nbdsnap-chunk-max-count-shift=64 is out of range: it must be 1..63"},
      {"nbdsnap-tracking-block-min-shift", "12", "8",
       "nbdsnap-tracking-block-min-shift=8 is out of range: it must be 9..30"},
      {"nbdsnap-tracking-block-max-shift", "24", "31",
       "nbdsnap-tracking-block-max-shift=31 is out of range: it must be 9..30"},
      {"nbdsnap-tracking-block-max-count", "65536", "0",
       "nbdsnap-tracking-block-max-count=0 is out of range: it must be 1..4294967296"},
      {"nbdsnap-chunk-buffer-budget", "1G", "65G",
       "nbdsnap-chunk-buffer-budget=65G is out of range: it must be 0..64G"},
      {"nbdsnap-low-space-threshold", "0", "2P",
       "nbdsnap-low-space-threshold=2P is out of range: it must be 0..1P"},
      {"nbdsnap-copy-io-size", "1M", "48K",
       "nbdsnap-copy-io-size=48K is not a power of two: it must be 4K..64M, a power of two"},
      {"nbdsnap-checkpoints-kept", "32", "129",
       "nbdsnap-checkpoints-kept=129 is out of range: it must be 2..128"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.key);
    FilterConfig good;
    REQUIRE(good.apply(c.key, c.good));
    CHECK(good.complete());
    FilterConfig bad;
    REQUIRE(bad.apply(c.key, c.bad));  // bounds are the sanitize step's, in .config_complete
    auto s = bad.complete();
    CHECK(s.code() == Errc::invalid_argument);
    CHECK(s.message() == c.message);
  }
}

TEST_CASE("tuning_parameters_reach_the_engine_configuration") {
  FilterConfig config;
  for (auto [key, value] : {std::pair{"nbdsnap-chunk-max-shift", "24"},
                            {"nbdsnap-chunk-max-count-shift", "30"},
                            {"nbdsnap-tracking-block-max-shift", "20"},
                            {"nbdsnap-tracking-block-max-count", "4096"},
                            {"nbdsnap-chunk-buffer-budget", "16M"},
                            {"nbdsnap-low-space-threshold", "1G"},
                            {"nbdsnap-copy-io-size", "256K"}}) {
    REQUIRE(config.apply(key, value));
  }
  REQUIRE(config.complete());
  CHECK(config.tuning.sizing.chunk_maximum_shift == 24);
  CHECK(config.tuning.sizing.chunk_maximum_count_shift == 30);
  CHECK(config.tuning.sizing.tracking_block_maximum_shift == 20);
  CHECK(config.tuning.sizing.tracking_block_maximum_count == 4096);
  CHECK(config.tuning.chunk_buffer_budget == (16ull << 20));
  CHECK(config.tuning.low_space_threshold == (1ull << 30));
  CHECK(config.tuning.copy_io_size == (256ull << 10));
}

TEST_CASE("the_old_name_nbdsnap_tracking_min_shift_still_works") {
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-tracking-min-shift", "20"));
  CHECK(config.tuning.sizing.tracking_block_minimum_shift == 20);
  auto s = FilterConfig().apply("nbdsnap-tracking-min-shift", "x");
  CHECK(s.code() == Errc::invalid_argument);
  CHECK(s.message() ==
        "nbdsnap-tracking-min-shift is the old name of nbdsnap-tracking-block-min-shift: "
        "nbdsnap-tracking-block-min-shift=x: expected a whole number 9..30");
}

TEST_CASE("the_help_lists_every_tuning_parameter_with_its_default_and_bounds") {
  const std::string help = nbdsnap::config_help();
  CHECK(help.find("nbdsnap-chunk-min-shift=N") != std::string::npos);
  CHECK(help.find("nbdsnap-copy-io-size=SIZE") != std::string::npos);
  CHECK(help.find("(default 18; 12..30)") != std::string::npos);
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

TEST_CASE("state_dir_is_created_in_an_existing_parent_and_reported_missing_without_one") {
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-state-dir", "/nonexistent/nbdsnap-state"));
  const nbdsnap::Status missing = config.complete();
  CHECK(missing.code() == Errc::not_found);
  CHECK(missing.message().find(
            "nbdsnap-state-dir=/nonexistent/nbdsnap-state does not exist, and neither does its "
            "parent directory /nonexistent") == 0);
  const std::string dir = temp_dir();
  FilterConfig fresh;
  REQUIRE(fresh.apply("nbdsnap-state-dir", dir + "/state"));
  CHECK(fresh.complete());
  CHECK(access((dir + "/state").c_str(), W_OK) == 0);
  rmdir((dir + "/state").c_str());
  rmdir(dir.c_str());
}

TEST_CASE("default_storage_may_be_a_range_of_a_file_but_not_of_a_directory") {
  std::string dir = temp_dir();
  std::string file = dir + "/diff.img";
  std::ofstream(file).close();
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-storage", file + ":1M+64M"));
  REQUIRE(config.complete());
  auto spec = config.default_storage_for("s");
  CHECK(spec.path == file);
  CHECK(spec.offset == (1ull << 20));
  CHECK(spec.length == (64ull << 20));
  CHECK(spec.size == 0);
  FilterConfig directory;
  REQUIRE(directory.apply("nbdsnap-storage", dir + ":0+64M"));
  auto s = directory.complete();
  CHECK(s.code() == Errc::invalid_argument);
  CHECK(s.message().find("is a directory: give the size of each snapshot's file as DIR:SIZE, not a range") !=
        std::string::npos);
  FilterConfig typo;
  auto t = typo.apply("nbdsnap-storage", dir + ":1.5G");
  CHECK(t.code() == Errc::invalid_argument);
  CHECK(t.message().find("nbdsnap-storage: storage '" + dir +
                         ":1.5G': '1.5G' after the last ':' is not a size") == 0);
  unlink(file.c_str());
  rmdir(dir.c_str());
}

TEST_CASE("checkpoints_kept_defaults_to_16_and_takes_2_to_128") {
  FilterConfig config;
  CHECK(config.tuning.checkpoints_kept == 16);
  REQUIRE(config.apply("nbdsnap-checkpoints-kept", "2"));
  CHECK(config.tuning.checkpoints_kept == 2);
  config = FilterConfig();
  REQUIRE(config.apply("nbdsnap-checkpoints-kept", "128"));
  CHECK(config.tuning.checkpoints_kept == 128);
  REQUIRE(config.complete());
  for (const char* bad : {"1", "129", "0"}) {  // numbers: refused by the sanitize step
    CAPTURE(bad);
    FilterConfig out_of_range;
    REQUIRE(out_of_range.apply("nbdsnap-checkpoints-kept", bad));
    auto s = out_of_range.complete();
    CHECK(s.code() == Errc::invalid_argument);
    CHECK(s.message() ==
          std::string("nbdsnap-checkpoints-kept=") + bad + " is out of range: it must be 2..128");
  }
  for (const char* bad : {"-1", "", "16x"}) {  // not numbers: refused at once
    CAPTURE(bad);
    auto s = FilterConfig().apply("nbdsnap-checkpoints-kept", bad);
    CHECK(s.code() == Errc::invalid_argument);
    CHECK(s.message() == std::string("nbdsnap-checkpoints-kept=") + bad + ": expected a whole number 2..128");
  }
  CHECK(FilterConfig().apply("nbdsnap-checkpoints-kept", "99999999999999999999").code() == Errc::overflow);
}

TEST_CASE("a_parameter_given_twice_is_refused_as_nbdsnapd_refuses_a_repeated_option") {
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-chunk-min-shift", "20"));
  nbdsnap::Status again = config.apply("nbdsnap-chunk-min-shift", "12");
  CHECK(again.code() == nbdsnap::Errc::invalid_argument);
  CHECK(again.message().find("nbdsnap-chunk-min-shift is given more than once") != std::string::npos);
  FilterConfig aliases;
  REQUIRE(aliases.apply("nbdsnap-tracking-min-shift", "12"));
  CHECK_FALSE(aliases.apply("nbdsnap-tracking-block-min-shift", "20"));
}

TEST_CASE("control_max_sessions_bounds_the_control_socket_and_needs_it") {
  FilterConfig defaults;
  CHECK(defaults.control_max_sessions == 32);
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-control", "/tmp/ctl.sock"));
  REQUIRE(config.apply("nbdsnap-control-max-sessions", "2"));
  CHECK(config.control_max_sessions == 2);
  CHECK(config.complete());
  FilterConfig zero;
  const Status refused = zero.apply("nbdsnap-control-max-sessions", "0");
  CHECK(refused.code() == Errc::invalid_argument);
  CHECK(refused.message().find("nbdsnap-control-max-sessions=0") != std::string::npos);
  CHECK(refused.message().find("1..1024") != std::string::npos);
  FilterConfig alone;
  REQUIRE(alone.apply("nbdsnap-control-max-sessions", "4"));
  const Status lonely = alone.complete();
  CHECK(lonely.code() == Errc::invalid_argument);
  CHECK(lonely.message().find("give nbdsnap-control=SOCKET too") != std::string::npos);
}
