// SPDX-License-Identifier: BSD-3-Clause
// units_test.cpp — sizes as users write them, and what the errors say.
#include "units.h"

#include <doctest/doctest.h>

#include "test_support.h"

using namespace nbdsnap;

TEST_CASE("sizes parse as bytes or with binary suffixes") {
  struct Row {
    const char* text;
    uint64_t bytes;
  };
  const Row rows[] = {
      {"0", 0},           {"1048576", 1048576}, {"512", 512}, {"64K", 64ull << 10}, {"256M", 256ull << 20},
      {"2G", 2ull << 30}, {"1T", 1ull << 40}};
  for (const Row& row : rows) {
    CAPTURE(row.text);
    uint64_t bytes = 12345;
    CHECK_OK(parse_size(row.text, bytes));
    CHECK(bytes == row.bytes);
  }
}

TEST_CASE("malformed sizes are refused") {
  for (const char* text : {"", "K", "abc", "12Q", "-1", "1.5.3G", "64KK", " "}) {
    CAPTURE(text);
    uint64_t bytes = 0;
    CHECK_FALSE(parse_size(text, bytes).is_ok());
  }
}

TEST_CASE("sizes that do not fit in 64 bits are refused") {
  uint64_t bytes = 0;
  CHECK_FALSE(parse_size("18446744073709551616", bytes).is_ok());
  CHECK_FALSE(parse_size("99999999999T", bytes).is_ok());
  CHECK_OK(parse_size("18446744073709551615", bytes));
  CHECK(bytes == UINT64_MAX);
}

TEST_CASE("format size prints binary units") {
  CHECK(format_size(3ull << 29) == "1.5 GiB");
  CHECK(format_size(1ull << 30).find("GiB") != std::string::npos);
  CHECK(format_size(64ull << 10).find("KiB") != std::string::npos);
  CHECK(format_size(5ull << 40).find("TiB") != std::string::npos);
}

TEST_CASE("size errors say in words what to write instead") {
  uint64_t bytes = 0;
  Status s = parse_size("-5M", bytes);
  CHECK(s.message() == "size '-5M' is negative: sizes are whole numbers of bytes");
  s = parse_size("1.5G", bytes);
  CHECK(s.message() ==
        "size '1.5G' is not a whole number: write a whole number of bytes or of a smaller unit: "
        "1.5G is 1536M");
  s = parse_size("0.25M", bytes);
  CHECK(s.message().find("0.25M is 256K") != std::string::npos);
  s = parse_size("1.3G", bytes);
  CHECK(s.message() ==
        "size '1.3G' is not a whole number: write a whole number of bytes or of a smaller unit");
  s = parse_size("12Q", bytes);
  CHECK(s.message() == "size '12Q' has an unknown suffix 'Q' (use K, M, G, T or P, powers of 1024)");
  s = parse_size("", bytes);
  CHECK(s.message().find("the size is empty") == 0);
  s = parse_size("lots", bytes);
  CHECK(s.message().find("does not start with a number") != std::string::npos);
}

TEST_CASE("binary suffixes may be written as KiB, KB or lower case") {
  uint64_t bytes = 0;
  CHECK_OK(parse_size("64KiB", bytes));
  CHECK(bytes == 64ull << 10);
  CHECK_OK(parse_size("2GB", bytes));
  CHECK(bytes == 2ull << 30);
  CHECK_OK(parse_size("3p", bytes));
  CHECK(bytes == 3ull << 50);
}
