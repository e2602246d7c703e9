// sizing_test.cpp — the tracking-block and chunk size rules, as tables from 1 MiB to 64 TiB.
#include "sizing.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>

using namespace nbdsnap;

namespace {

constexpr uint64_t KiB = 1ull << 10;
constexpr uint64_t MiB = 1ull << 20;
constexpr uint64_t GiB = 1ull << 30;
constexpr uint64_t TiB = 1ull << 40;

// The rule written the slow, obvious way: start at 2^shift, double while the device needs too many units.
uint64_t expected_size(uint64_t device_size, unsigned minimum_shift, uint64_t maximum_count) {
  uint64_t size = uint64_t{1} << minimum_shift;
  while ((device_size + size - 1) / size > maximum_count) size *= 2;
  return size;
}

struct SizeRow {
  uint64_t device_size;
  uint64_t tracking_block;
  uint64_t chunk;
};

}  // namespace

TEST_CASE("default sizes scale with the device from 1 MiB to 64 TiB") {
  const SizingRules rules;
  // Tracking: >= 64 KiB, <= 2^21 blocks (doubles past 128 GiB). Chunk: >= 256 KiB, <= 2^21 chunks (past 512 GiB).
  const SizeRow table[] = {
      {1 * MiB, 64 * KiB, 256 * KiB},     {16 * MiB, 64 * KiB, 256 * KiB},   {1 * GiB, 64 * KiB, 256 * KiB},
      {64 * GiB, 64 * KiB, 256 * KiB},    {128 * GiB, 64 * KiB, 256 * KiB},  {256 * GiB, 128 * KiB, 256 * KiB},
      {512 * GiB, 256 * KiB, 256 * KiB},  {1 * TiB, 512 * KiB, 512 * KiB},   {2 * TiB, 1 * MiB, 1 * MiB},
      {4 * TiB, 2 * MiB, 2 * MiB},        {8 * TiB, 4 * MiB, 4 * MiB},       {16 * TiB, 8 * MiB, 8 * MiB},
      {32 * TiB, 16 * MiB, 16 * MiB},     {64 * TiB, 32 * MiB, 32 * MiB},
  };
  for (const SizeRow& row : table) {
    CAPTURE(row.device_size);
    CHECK(tracking_block_size(row.device_size, rules) == row.tracking_block);
    CHECK(chunk_size(row.device_size, rules) == row.chunk);
  }
}

TEST_CASE("a device one byte over a power of two gets the next size up") {
  const SizingRules rules;
  CHECK(tracking_block_size(128 * GiB + 1, rules) == 128 * KiB);
  CHECK(tracking_block_size(128 * GiB - 1, rules) == 64 * KiB);
  CHECK(chunk_size(512 * GiB + 1, rules) == 512 * KiB);
  CHECK(chunk_size(512 * GiB - 512, rules) == 256 * KiB);
  CHECK(chunk_size(64 * TiB + 4096, rules) == 64 * MiB);
}

TEST_CASE("every default size is a power of two within the unit count limit") {
  const SizingRules rules;
  for (uint64_t device = 1 * MiB; device <= 64 * TiB; device *= 2) {
    for (const uint64_t size : {device - 512, device, device + 512, device + device / 3}) {
      CAPTURE(size);
      const uint64_t tracking = tracking_block_size(size, rules);
      const uint64_t chunk = chunk_size(size, rules);
      CHECK(tracking == expected_size(size, 16, 1u << 21));
      CHECK(chunk == expected_size(size, 18, 1u << 21));
      CHECK((tracking & (tracking - 1)) == 0);
      CHECK((chunk & (chunk - 1)) == 0);
      CHECK(unit_count(size, tracking) <= rules.tracking_block_maximum_count);
      CHECK(unit_count(size, chunk) <= rules.chunk_maximum_count);
    }
  }
}

TEST_CASE("custom rules change the minimum and the maximum count") {
  SizingRules rules;
  rules.tracking_block_minimum_shift = 12;  // 4 KiB
  rules.tracking_block_maximum_count = 16;
  rules.chunk_minimum_shift = 20;  // 1 MiB
  rules.chunk_maximum_count = 1000;
  const SizeRow table[] = {
      {1 * MiB, 64 * KiB, 1 * MiB},       {4 * KiB, 4 * KiB, 1 * MiB},      {64 * KiB, 4 * KiB, 1 * MiB},
      {64 * KiB + 1, 8 * KiB, 1 * MiB},   {1 * GiB, 64 * MiB, 2 * MiB},     {1000 * MiB, 64 * MiB, 1 * MiB},
      {1000 * MiB + 1, 64 * MiB, 2 * MiB}, {64 * TiB, 4 * TiB, 128 * GiB},
  };
  for (const SizeRow& row : table) {
    CAPTURE(row.device_size);
    CHECK(tracking_block_size(row.device_size, rules) == row.tracking_block);
    CHECK(chunk_size(row.device_size, rules) == row.chunk);
  }
}

TEST_CASE("small custom rules keep the minimum size on small devices") {
  SizingRules rules;
  rules.chunk_minimum_shift = 12;
  rules.chunk_maximum_count = 1ull << 40;
  rules.tracking_block_minimum_shift = 9;
  rules.tracking_block_maximum_count = 1ull << 40;
  for (const uint64_t size : {4 * KiB, 1 * MiB, 1 * GiB, 16 * TiB}) {
    CAPTURE(size);
    CHECK(chunk_size(size, rules) == 4 * KiB);
    CHECK(tracking_block_size(size, rules) == 512);
  }
}

TEST_CASE("unit count rounds a partial last unit up") {
  CHECK(unit_count(0, 4096) == 0);
  CHECK(unit_count(1, 4096) == 1);
  CHECK(unit_count(4096, 4096) == 1);
  CHECK(unit_count(4097, 4096) == 2);
  CHECK(unit_count(64 * TiB, 32 * MiB) == (1u << 21));
}
