// SPDX-License-Identifier: BSD-3-Clause
// tuning_test.cpp — the sanitize step: every tuning option with good and bad values, bounds in the messages,
// in each front end's spelling.
#include "tuning.h"

#include <doctest/doctest.h>

#include <set>
#include <string>

#include "test_support.h"

using namespace nbdsnap;

namespace {

const OptionSpelling kServer{"--", " "};
const OptionSpelling kFilter{"nbdsnap-", "="};

struct OptionCase {
  const char* name;
  const char* good;
  uint64_t good_value;
  const char* too_small;  // nullptr: the minimum is 0
  const char* too_large;
};

// One good value and the values just outside the bounds of every option.
const OptionCase kCases[] = {
    {"chunk-min-shift", "16", 16, "11", "31"},
    {"chunk-max-shift", "28", 28, "11", "31"},
    {"chunk-max-count-shift", "21", 21, "0", "64"},
    {"tracking-block-min-shift", "12", 12, "8", "31"},
    {"tracking-block-max-shift", "24", 24, "8", "31"},
    {"tracking-block-max-count", "65536", 65536, "0", "4294967297"},
    {"chunk-buffer-budget", "1G", 1ull << 30, nullptr, "65G"},
    {"low-space-threshold", "256M", 256ull << 20, nullptr, "1025T"},
    {"copy-io-size", "1M", 1ull << 20, "2K", "128M"},
    {"checkpoints-kept", "32", 32, "1", "129"},
    {"drain-limit-ms", "500", 500, "99", "3600001"},
};

std::string sanitize_message(const char* name, const char* text, const OptionSpelling& spelling) {
  EngineConfig config;
  const TuningOption* option = find_tuning_option(name);
  REQUIRE(option != nullptr);
  REQUIRE_OK(parse_tuning_option(*option, text, config, spelling));
  const Status s = sanitize_tuning(config, spelling);
  CHECK(s.code() == Errc::invalid_argument);
  return s.message();
}

}  // namespace

TEST_CASE("the defaults pass the sanitize step and are blksnap v4's") {
  const EngineConfig config;
  CHECK_OK(sanitize_tuning(config, kServer));
  CHECK(config.sizing.chunk_minimum_shift == 18);
  CHECK(config.sizing.chunk_maximum_shift == 26);
  CHECK(config.sizing.chunk_maximum_count_shift == 40);
  CHECK(config.sizing.tracking_block_minimum_shift == 16);
  CHECK(config.sizing.tracking_block_maximum_shift == 26);
  CHECK(config.sizing.tracking_block_maximum_count == 2097152);
}

TEST_CASE("every tuning option is tested here, once") {
  std::set<std::string> listed, tested;
  for (const TuningOption& option : tuning_options()) listed.insert(std::string(option.name));
  for (const OptionCase& c : kCases) tested.insert(c.name);
  CHECK(listed == tested);
  CHECK(listed.size() == tuning_options().size());
}

TEST_CASE("every option takes a good value") {
  for (const OptionCase& c : kCases) {
    CAPTURE(c.name);
    EngineConfig config;
    const TuningOption* option = find_tuning_option(c.name);
    REQUIRE(option != nullptr);
    REQUIRE_OK(parse_tuning_option(*option, c.good, config, kServer));
    CHECK(option->get(config) == c.good_value);
    CHECK_OK(sanitize_tuning(config, kServer));
  }
}

TEST_CASE("every option refuses values outside its bounds, naming the option and the bounds") {
  for (const OptionCase& c : kCases) {
    CAPTURE(c.name);
    const TuningOption* option = find_tuning_option(c.name);
    const std::string bounds = option->bounds_text();
    for (const char* bad : {c.too_small, c.too_large}) {
      if (bad == nullptr) continue;
      CAPTURE(bad);
      const std::string server = sanitize_message(c.name, bad, kServer);
      CHECK(server.find("--" + std::string(c.name) + " ") == 0);
      CHECK(server.find(bounds) != std::string::npos);
      const std::string filter = sanitize_message(c.name, bad, kFilter);
      CHECK(filter.find("nbdsnap-" + std::string(c.name) + "=") == 0);
      CHECK(filter.find(bounds) != std::string::npos);
    }
  }
}

TEST_CASE("the messages read as the user wrote the option") {
  CHECK(sanitize_message("chunk-min-shift", "40", kServer) ==
        "--chunk-min-shift 40 is out of range: it must be 12..30");
  CHECK(sanitize_message("chunk-min-shift", "40", kFilter) ==
        "nbdsnap-chunk-min-shift=40 is out of range: it must be 12..30");
  CHECK(sanitize_message("chunk-buffer-budget", "65G", kServer) ==
        "--chunk-buffer-budget 65G is out of range: it must be 0..64G");
  CHECK(sanitize_message("copy-io-size", "48K", kFilter) ==
        "nbdsnap-copy-io-size=48K is not a power of two: it must be 4K..64M, a power of two");
}

TEST_CASE("text that is not a value is refused with the option's name") {
  EngineConfig config;
  for (const char* name : {"chunk-min-shift", "tracking-block-max-count"}) {
    CAPTURE(name);
    const TuningOption* option = find_tuning_option(name);
    for (const char* bad : {"", "16x", "-1", "1.5", " 16", "0x10"}) {
      CAPTURE(bad);
      const Status s = parse_tuning_option(*option, bad, config, kFilter);
      CHECK(s.code() == Errc::invalid_argument);
      CHECK(s.message().find("nbdsnap-" + std::string(name) + "=") == 0);
    }
    CHECK(parse_tuning_option(*option, "99999999999999999999999", config, kFilter).code() == Errc::overflow);
  }
  const TuningOption* budget = find_tuning_option("chunk-buffer-budget");
  const Status s = parse_tuning_option(*budget, "lots", config, kServer);
  CHECK(s.code() == Errc::invalid_argument);
  CHECK(s.message().find("--chunk-buffer-budget lots: ") == 0);
}

TEST_CASE("a shift that does not fit the field is out of range, not truncated") {
  EngineConfig config;
  const TuningOption* option = find_tuning_option("chunk-min-shift");
  const Status s = parse_tuning_option(*option, "4294967314", config, kServer);  // 2^32 + 18
  CHECK(s.code() == Errc::invalid_argument);
  CHECK(s.message().find("12..30") != std::string::npos);
}

TEST_CASE("a maximum shift below its minimum shift is refused, naming both") {
  EngineConfig config;
  config.sizing.chunk_minimum_shift = 20;
  config.sizing.chunk_maximum_shift = 19;
  Status s = sanitize_tuning(config, kServer);
  CHECK(s.code() == Errc::invalid_argument);
  CHECK(s.message() ==
        "--chunk-max-shift 19 is below --chunk-min-shift 20: raise --chunk-max-shift to at least 20 or lower "
        "--chunk-min-shift");
  config = EngineConfig{};
  config.sizing.tracking_block_minimum_shift = 22;
  config.sizing.tracking_block_maximum_shift = 21;
  s = sanitize_tuning(config, kFilter);
  CHECK(s.message().find(
            "nbdsnap-tracking-block-max-shift=21 is below nbdsnap-tracking-block-min-shift=22") == 0);
}

TEST_CASE("help text gives each option's default and bounds") {
  CHECK(find_tuning_option("chunk-min-shift")->help_text() ==
        "smallest copy-on-write chunk is 2^N bytes (default 18; 12..30)");
  CHECK(find_tuning_option("chunk-buffer-budget")->help_text().find("(default 64M; 0..64G)") !=
        std::string::npos);
  CHECK(find_tuning_option("copy-io-size")->help_text().find("(default 4M; 4K..64M, a power of two)") !=
        std::string::npos);
  CHECK(find_tuning_option("no-such-option") == nullptr);
}
