// SPDX-License-Identifier: BSD-3-Clause
// sizing_test.cpp — blksnap v4's tracking-block and chunk size rules, as tables from 1 MiB to 1 PiB, and what
// the chunk rule means for difference storage on a large origin.
#include "sizing.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <random>

#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

// The rule written the slow, obvious way: start at 2^min_shift, double while the device needs too many units
// but not past 2^max_shift, then never below the minimum I/O size.
uint64_t expected_size(uint64_t device_size, unsigned min_shift, unsigned max_shift, uint64_t max_count,
                       uint64_t minimum_io = 1) {
  uint64_t size = uint64_t{1} << min_shift;
  while ((device_size + size - 1) / size > max_count && size < (uint64_t{1} << max_shift)) size *= 2;
  while (size < minimum_io) size *= 2;
  return size;
}

struct SizeRow {
  uint64_t device_size;
  uint64_t tracking_block;
  uint64_t chunk;
};

}  // namespace

TEST_CASE("default sizes follow blksnap v4 from 1 MiB to 1 PiB") {
  const SizingRules rules;
  // Tracking: >= 64 KiB, <= 2^21 blocks (doubles past 128 GiB) until 64 MiB (past 128 TiB there are more).
  // Chunks: 256 KiB up to 2^40 chunks, i.e. 256 KiB for every device below 256 PiB.
  const SizeRow table[] = {
      {1 * MiB, 64 * KiB, 256 * KiB},    {16 * MiB, 64 * KiB, 256 * KiB},  {1 * GiB, 64 * KiB, 256 * KiB},
      {64 * GiB, 64 * KiB, 256 * KiB},   {128 * GiB, 64 * KiB, 256 * KiB}, {256 * GiB, 128 * KiB, 256 * KiB},
      {512 * GiB, 256 * KiB, 256 * KiB}, {1 * TiB, 512 * KiB, 256 * KiB},  {2 * TiB, 1 * MiB, 256 * KiB},
      {4 * TiB, 2 * MiB, 256 * KiB},     {8 * TiB, 4 * MiB, 256 * KiB},    {9 * TiB, 8 * MiB, 256 * KiB},
      {16 * TiB, 8 * MiB, 256 * KiB},    {32 * TiB, 16 * MiB, 256 * KiB},  {64 * TiB, 32 * MiB, 256 * KiB},
      {128 * TiB, 64 * MiB, 256 * KiB},  {256 * TiB, 64 * MiB, 256 * KiB}, {1 * PiB, 64 * MiB, 256 * KiB},
  };
  for (const SizeRow& row : table) {
    CAPTURE(row.device_size);
    CHECK(tracking_block_size(row.device_size, 1, rules) == row.tracking_block);
    CHECK(chunk_size(row.device_size, 1, rules) == row.chunk);
  }
}

TEST_CASE("a device one byte over a power of two gets the next tracking block size up") {
  const SizingRules rules;
  CHECK(tracking_block_size(128 * GiB + 1, 1, rules) == 128 * KiB);
  CHECK(tracking_block_size(128 * GiB - 1, 1, rules) == 64 * KiB);
  CHECK(tracking_block_size(64 * TiB + 4096, 1, rules) == 64 * MiB);
  CHECK(tracking_block_size(128 * TiB + 4096, 1, rules) == 64 * MiB);  // the maximum shift holds
}

TEST_CASE("past the maximum shift the count may exceed the maximum count") {
  const SizingRules rules;
  CHECK(unit_count(1 * PiB, tracking_block_size(1 * PiB, 1, rules)) == (1u << 24));
  SizingRules few_chunks;
  few_chunks.chunk_maximum_count_shift = 10;  // at most 1024 chunks, but chunks stop growing at 64 MiB
  CHECK(chunk_size(256 * MiB, 1, few_chunks) == 256 * KiB);
  CHECK(chunk_size(256 * MiB + 1, 1, few_chunks) == 512 * KiB);
  CHECK(chunk_size(64 * GiB, 1, few_chunks) == 64 * MiB);
  CHECK(chunk_size(1 * PiB, 1, few_chunks) == 64 * MiB);
}

TEST_CASE("every default size is a power of two matching the rule written out") {
  const SizingRules rules;
  for (uint64_t device = 1 * MiB; device <= 1 * PiB; device *= 2) {
    for (const uint64_t size : {device - 512, device, device + 512, device + device / 3}) {
      CAPTURE(size);
      const uint64_t tracking = tracking_block_size(size, 1, rules);
      const uint64_t chunk = chunk_size(size, 1, rules);
      CHECK(tracking == expected_size(size, 16, 26, 1u << 21));
      CHECK(chunk == expected_size(size, 18, 26, uint64_t{1} << 40));
      CHECK((tracking & (tracking - 1)) == 0);
      CHECK((chunk & (chunk - 1)) == 0);
      CHECK(tracking <= 64 * MiB);
      CHECK(chunk <= 64 * MiB);
    }
  }
}

TEST_CASE("no chunk or tracking block is smaller than the device's minimum I/O size") {
  const SizingRules rules;
  // Powers of two are taken as they are; others are rounded up to one.
  CHECK(chunk_size(1 * GiB, 4096, rules) == 256 * KiB);
  CHECK(chunk_size(1 * GiB, 1 * MiB, rules) == 1 * MiB);
  CHECK(chunk_size(1 * GiB, 768 * KiB, rules) == 1 * MiB);
  CHECK(tracking_block_size(1 * GiB, 512 * KiB, rules) == 512 * KiB);
  CHECK(tracking_block_size(1 * GiB, 0, rules) == 64 * KiB);
  // The minimum I/O size wins over the maximum shift: a smaller chunk could not be read on its own.
  CHECK(chunk_size(1 * GiB, 128 * MiB, rules) == 128 * MiB);
  for (uint64_t device = 1 * MiB; device <= 1 * PiB; device *= 4) {
    for (const uint64_t minimum_io : {uint64_t{512}, uint64_t{4096}, 64 * KiB, 3 * MiB}) {
      CAPTURE(device);
      CAPTURE(minimum_io);
      CHECK(chunk_size(device, minimum_io, rules) ==
            expected_size(device, 18, 26, uint64_t{1} << 40, minimum_io));
      CHECK(tracking_block_size(device, minimum_io, rules) ==
            expected_size(device, 16, 26, 1u << 21, minimum_io));
    }
  }
}

TEST_CASE("custom rules change the shifts and the maximum counts") {
  SizingRules rules;
  rules.tracking_block_minimum_shift = 12;  // 4 KiB
  rules.tracking_block_maximum_shift = 30;
  rules.tracking_block_maximum_count = 16;
  rules.chunk_minimum_shift = 20;  // 1 MiB
  rules.chunk_maximum_shift = 30;
  rules.chunk_maximum_count_shift = 10;  // 1024 chunks
  const SizeRow table[] = {
      {1 * MiB, 64 * KiB, 1 * MiB},     {4 * KiB, 4 * KiB, 1 * MiB},  {64 * KiB, 4 * KiB, 1 * MiB},
      {64 * KiB + 1, 8 * KiB, 1 * MiB}, {1 * GiB, 64 * MiB, 1 * MiB}, {1 * GiB + 1, 128 * MiB, 2 * MiB},
      {64 * TiB, 1 * GiB, 1 * GiB},
  };
  for (const SizeRow& row : table) {
    CAPTURE(row.device_size);
    CHECK(tracking_block_size(row.device_size, 1, rules) == row.tracking_block);
    CHECK(chunk_size(row.device_size, 1, rules) == row.chunk);
  }
}

TEST_CASE("a minimum shift above the maximum shift gives the maximum") {
  SizingRules rules;
  rules.chunk_minimum_shift = 22;
  rules.chunk_maximum_shift = 20;
  CHECK(chunk_size(1 * GiB, 1, rules) == 1 * MiB);
}

TEST_CASE("each copy read is the copy I/O size, at least the minimum I/O size, at most the chunk") {
  CHECK(copy_read_size(4 * MiB, 1, 256 * KiB) == 256 * KiB);
  CHECK(copy_read_size(4 * MiB, 1, 64 * MiB) == 4 * MiB);
  CHECK(copy_read_size(4 * KiB, 64 * KiB, 1 * MiB) == 64 * KiB);
  CHECK(copy_read_size(4 * KiB, 3000, 1 * MiB) == 4 * KiB);
}

TEST_CASE("unit count rounds a partial last unit up") {
  CHECK(unit_count(0, 4096) == 0);
  CHECK(unit_count(1, 4096) == 1);
  CHECK(unit_count(4096, 4096) == 1);
  CHECK(unit_count(4097, 4096) == 2);
  CHECK(unit_count(64 * TiB, 32 * MiB) == (1u << 21));
}

TEST_CASE(
    "100 random 4 KiB writes to a 9 TiB origin use at most 100 chunks of 256 KiB of difference storage") {
  // Under the v1-v3 rule a 9 TiB origin had 8 MiB chunks: these writes used 800 MiB of difference storage.
  TempDir dir;
  EngineConfig config;
  config.chunk_buffer_budget = 4 * MiB;
  config.low_space_threshold = 0;
  Engine engine(config);
  REQUIRE_OK(engine.attach_origin("big", std::make_shared<MemoryDevice>(9 * TiB), false));
  OriginInfo info;
  REQUIRE_OK(engine.origin_info("big", info));
  CHECK(info.chunk_size == 256 * KiB);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"big"}, dir, "diff", 64 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  auto origin = engine.find_origin("big");
  std::mt19937_64 random(9);
  const auto data = pattern(4096, 0, 3);
  for (int i = 0; i < 100; ++i) {
    const uint64_t offset = (random() % (9 * TiB / 4096)) * 4096;
    REQUIRE_OK(origin->write(data.data(), 4096, offset, false));
  }
  SnapshotInfo snapshot;
  REQUIRE_OK(engine.snapshot_info("s", snapshot));
  CHECK(snapshot.state == SnapshotState::taken);
  CHECK(snapshot.chunks_copied <= 100);
  CHECK(snapshot.storage_used <= 100 * 256 * KiB);
  REQUIRE_OK(engine.destroy_snapshot("s"));
}

TEST_CASE(
    "an origin on a device with a large minimum I/O size gets chunks and tracking blocks of that size") {
  TempDir dir;
  Engine engine(small_config(12));
  REQUIRE_OK(engine.attach_origin("raid", std::make_shared<DeviceWithMinimumIo>(64 * MiB, 128 * KiB), false));
  OriginInfo info;
  REQUIRE_OK(engine.origin_info("raid", info));
  CHECK(info.minimum_io_size == 128 * KiB);
  CHECK(info.chunk_size == 128 * KiB);
  CHECK(info.tracking_block_size == 128 * KiB);
  // Without a device (the filter), the front end gives the minimum (the plugin's minimum block size).
  REQUIRE_OK(engine.attach_origin("plugin", nullptr, false, 64 * MiB, 64 * KiB));
  REQUIRE_OK(engine.origin_info("plugin", info));
  CHECK(info.chunk_size == 64 * KiB);
  CHECK(info.tracking_block_size == 64 * KiB);
}
