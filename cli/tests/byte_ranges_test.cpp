// SPDX-License-Identifier: BSD-3-Clause
// byte_ranges_test.cpp — "OFFSET+LENGTH" parsing and range merging.
#include <doctest/doctest.h>

#include "byte_ranges.h"
#include "exit_codes.h"

using namespace nbdsnap::cli;

TEST_CASE("parse_byte_range_reads_plain_numbers_and_size_suffixes") {
  CHECK(parse_byte_range("0+4096") == ByteRange{0, 4096});
  CHECK(parse_byte_range("1M+64K") == ByteRange{1 << 20, 64 << 10});
}

TEST_CASE("parse_byte_range_refuses_malformed_text_as_a_usage_error") {
  for (const char* text : {"", "4096", "+4096", "0+", "x+1", "1+y", "0+0", "18446744073709551615+2"}) {
    CAPTURE(text);
    try {
      parse_byte_range(text);
      FAIL("accepted");
    } catch (const CliError& error) {
      CHECK(error.code() == ExitCode::usage);
    }
  }
}

TEST_CASE("merge_byte_ranges_sorts_and_joins_overlapping_and_touching_ranges") {
  std::vector<ByteRange> merged =
      merge_byte_ranges({{100, 10}, {0, 10}, {10, 5}, {105, 20}, {200, 0}, {300, 1}});
  CHECK(merged == std::vector<ByteRange>{{0, 15}, {100, 25}, {300, 1}});
  CHECK(total_length(merged) == 41);
}

TEST_CASE("byte_ranges_round_trip_through_the_protocol_json") {
  std::vector<ByteRange> ranges = {{0, 65536}, {1 << 20, 4096}};
  CHECK(byte_ranges_from_json(byte_ranges_to_json(ranges)) == ranges);
  CHECK(byte_ranges_from_json(nlohmann::json::parse(R"([{"offset":0,"length":1}])")) ==
        std::vector<ByteRange>{{0, 1}});
  CHECK_THROWS_AS(byte_ranges_from_json(nlohmann::json::parse(R"([{"offset":-1,"length":1}])")), CliError);
  CHECK_THROWS_AS(byte_ranges_from_json(nlohmann::json::parse(R"({"offset":0})")), CliError);
}

TEST_CASE("byte ranges clipped at a limit: cut across it, dropped past it") {
  const std::vector<ByteRange> ranges = {{0, 512}, {1000, 100}, {1048576, 512}, {2000000, 10}};
  CHECK(clip_byte_ranges(ranges, 1048676) == std::vector<ByteRange>{{0, 512}, {1000, 100}, {1048576, 100}});
  CHECK(clip_byte_ranges(ranges, 0).empty());
  CHECK(clip_byte_ranges(ranges, UINT64_MAX) == ranges);
}
