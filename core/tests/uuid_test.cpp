// SPDX-License-Identifier: BSD-3-Clause
// uuid_test.cpp — version 4 UUIDs, the CBT generation id.
#include "uuid.h"

#include <doctest/doctest.h>

#include <set>

using namespace nbdsnap;

TEST_CASE("random uuids are version 4, variant 1, and differ") {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const Uuid uuid = Uuid::random();
    CHECK((uuid.bytes[6] >> 4) == 4);
    CHECK((uuid.bytes[8] & 0xc0) == 0x80);
    seen.insert(uuid.to_string());
  }
  CHECK(seen.size() == 100);
}

TEST_CASE("a uuid prints as lowercase 8-4-4-4-12 hex and parses back") {
  const Uuid uuid = Uuid::random();
  const std::string text = uuid.to_string();
  REQUIRE(text.size() == 36);
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23)
      CHECK(text[i] == '-');
    else
      CHECK(((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f')));
  }
  const auto parsed = Uuid::parse(text);
  REQUIRE(parsed.has_value());
  CHECK(*parsed == uuid);
}

TEST_CASE("malformed uuid text does not parse") {
  CHECK_FALSE(Uuid::parse("").has_value());
  CHECK_FALSE(Uuid::parse("not-a-uuid").has_value());
  CHECK_FALSE(Uuid::parse("0123456789abcdef0123456789abcdef").has_value());
  CHECK_FALSE(Uuid::parse("01234567-89ab-cdef-0123-456789abcdeg").has_value());
  CHECK_FALSE(Uuid::parse("01234567-89ab-cdef-0123-456789abcdef0").has_value());
  CHECK(Uuid::parse("01234567-89ab-4def-8123-456789abcdef").has_value());
}
