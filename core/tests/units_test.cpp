// units_test.cpp — sizes as users write them, and storage specs "PATH[:SIZE]".
#include "units.h"

#include <doctest/doctest.h>

#include "test_support.h"

using namespace nbdsnap;

TEST_CASE("sizes parse as bytes or with binary suffixes") {
  struct Row {
    const char* text;
    uint64_t bytes;
  };
  const Row rows[] = {{"0", 0},
                      {"1048576", 1048576},
                      {"512", 512},
                      {"64K", 64ull << 10},
                      {"256M", 256ull << 20},
                      {"2G", 2ull << 30},
                      {"1T", 1ull << 40}};
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

TEST_CASE("a storage spec is a path with an optional size") {
  std::string path;
  uint64_t size = 99;
  REQUIRE_OK(parse_storage_spec("/var/lib/nbdsnap/diff0", path, size));
  CHECK(path == "/var/lib/nbdsnap/diff0");
  CHECK(size == 0);
  REQUIRE_OK(parse_storage_spec("/var/lib/nbdsnap/diff1:2G", path, size));
  CHECK(path == "/var/lib/nbdsnap/diff1");
  CHECK(size == (2ull << 30));
  REQUIRE_OK(parse_storage_spec("diff2:1048576", path, size));
  CHECK(path == "diff2");
  CHECK(size == 1048576);
}

TEST_CASE("a storage spec without a path or with a bad size is refused") {
  std::string path;
  uint64_t size = 0;
  CHECK_FALSE(parse_storage_spec("", path, size).is_ok());
  CHECK_FALSE(parse_storage_spec(":1G", path, size).is_ok());
  CHECK_FALSE(parse_storage_spec("/tmp/diff:12Q", path, size).is_ok());
}
