// SPDX-License-Identifier: BSD-3-Clause
// memory_device_test.cpp — the sparse in-memory device and the fault-injecting wrapper.
#include "memory_device.h"

#include <doctest/doctest.h>

#include <thread>

#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

TEST_CASE("a new memory device reads as zeroes and holds no pages") {
  MemoryDevice device(1 << 20);
  CHECK(device.size() == (1 << 20));
  std::vector<uint8_t> buf(10000, 0xff);
  REQUIRE_OK(device.pread(buf.data(), buf.size(), 12345));
  CHECK(buf == std::vector<uint8_t>(10000, 0));
  CHECK(device.allocated_bytes() == 0);
}

TEST_CASE("unaligned writes crossing pages read back exactly") {
  MemoryDevice device(1 << 20);
  const auto data = pattern(10000, 4000, 7);
  REQUIRE_OK(device.pwrite(data.data(), data.size(), 4000, false));
  std::vector<uint8_t> back(10000);
  REQUIRE_OK(device.pread(back.data(), back.size(), 4000));
  CHECK(back == data);
  // Bytes around the write stay zero.
  std::vector<uint8_t> around(2);
  REQUIRE_OK(device.pread(around.data(), 1, 3999));
  REQUIRE_OK(device.pread(around.data() + 1, 1, 14000));
  CHECK(around == std::vector<uint8_t>{0, 0});
  CHECK(device.allocated_bytes() >= 10000);
  CHECK(device.allocated_bytes() <= 4 * 4096);
}

TEST_CASE("memory device refuses ranges past its end") {
  MemoryDevice device(8192);
  std::vector<uint8_t> buf(4096);
  CHECK_ERRC(device.pread(buf.data(), 4096, 4097), Errc::out_of_range);
  CHECK_ERRC(device.pwrite(buf.data(), 4096, 8192, false), Errc::out_of_range);
  CHECK_ERRC(device.pread(buf.data(), 1, UINT64_MAX), Errc::out_of_range);
  CHECK_OK(device.pread(buf.data(), 4096, 4096));
}

TEST_CASE("check range refuses overflowing ranges") {
  CHECK_OK(check_range(100, 0, 100));
  CHECK_OK(check_range(100, 100, 0));
  CHECK_ERRC(check_range(100, 100, 1), Errc::out_of_range);
  CHECK_ERRC(check_range(100, 2, UINT64_MAX), Errc::out_of_range);
  CHECK_ERRC(check_range(UINT64_MAX, UINT64_MAX - 1, 2), Errc::out_of_range);
}

TEST_CASE("zero and trim make a memory device read zeroes and free whole pages") {
  MemoryDevice device(1 << 20);
  fill_device(device, 3);
  const uint64_t full = device.allocated_bytes();
  CHECK(full == (1 << 20));
  REQUIRE_OK(device.zero(5000, 100000, false, false));
  std::vector<uint8_t> buf(100000);
  REQUIRE_OK(device.pread(buf.data(), buf.size(), 5000));
  CHECK(buf == std::vector<uint8_t>(100000, 0));
  REQUIRE_OK(device.trim(65536 * 4, 65536, false));
  REQUIRE_OK(device.pread(buf.data(), 65536, 65536 * 4));
  CHECK(std::vector<uint8_t>(buf.begin(), buf.begin() + 65536) == std::vector<uint8_t>(65536, 0));
  CHECK(device.allocated_bytes() <= full - 65536);
  // Bytes just outside the zeroed range keep their data.
  std::vector<uint8_t> edge(1);
  REQUIRE_OK(device.pread(edge.data(), 1, 4999));
  CHECK(edge[0] == pattern_byte(4999, 3));
  REQUIRE_OK(device.pread(edge.data(), 1, 105000));
  CHECK(edge[0] == pattern_byte(105000, 3));
}

TEST_CASE("a 16 TiB memory device costs nothing until written") {
  MemoryDevice device(16ull << 40);
  CHECK(device.size() == (16ull << 40));
  const auto data = pattern(4096, (16ull << 40) - 4096, 1);
  REQUIRE_OK(device.pwrite(data.data(), 4096, (16ull << 40) - 4096, false));
  CHECK(device.allocated_bytes() == 4096);
  std::vector<Extent> extents;
  REQUIRE_OK(device.extents((16ull << 40) - (1 << 20), 1 << 20, extents));
  REQUIRE_FALSE(extents.empty());
  CHECK(extents.front().offset == (16ull << 40) - (1 << 20));
  CHECK(extents.back().offset + extents.back().length == (16ull << 40));
  CHECK(extents.back().hole == false);
  CHECK(extents.front().hole == true);
}

TEST_CASE("memory device extents cover the range with holes where nothing was written") {
  MemoryDevice device(64 * 4096);
  const auto data = pattern(4096, 8 * 4096, 1);
  REQUIRE_OK(device.pwrite(data.data(), 4096, 8 * 4096, false));
  std::vector<Extent> extents;
  REQUIRE_OK(device.extents(0, 64 * 4096, extents));
  uint64_t next = 0;
  bool data_seen = false;
  for (const Extent& extent : extents) {
    CHECK(extent.offset == next);
    next = extent.offset + extent.length;
    if (!extent.hole && extent.offset <= 8 * 4096 && next >= 9 * 4096) data_seen = true;
    if (extent.offset + extent.length <= 8 * 4096 || extent.offset >= 9 * 4096) CHECK(extent.hole);
  }
  CHECK(next == 64 * 4096);
  CHECK(data_seen);
}

TEST_CASE("concurrent writers to disjoint ranges of a memory device all land") {
  MemoryDevice device(1 << 20);
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < 4; ++t) {
    threads.emplace_back([&device, t] {
      for (uint64_t offset = t * 1000; offset + 1000 <= device.size(); offset += 4000) {
        const auto data = pattern(1000, offset, 9);
        CHECK(device.pwrite(data.data(), 1000, offset, false).is_ok());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::vector<uint8_t> all(device.size());
  REQUIRE_OK(device.pread(all.data(), all.size(), 0));
  const uint64_t covered = (device.size() / 4000) * 4000;
  CHECK(std::vector<uint8_t>(all.begin(), all.begin() + covered) == pattern(covered, 0, 9));
}

TEST_CASE("a faulty device fails reads and writes only when told to") {
  auto inner = std::make_shared<MemoryDevice>(1 << 20);
  FaultyDevice faulty(inner);
  CHECK(faulty.size() == (1 << 20));
  const auto data = pattern(4096, 0, 1);
  std::vector<uint8_t> buf(4096);
  REQUIRE_OK(faulty.pwrite(data.data(), 4096, 0, false));
  REQUIRE_OK(faulty.pread(buf.data(), 4096, 0));
  CHECK(buf == data);

  faulty.fail_reads = true;
  CHECK_ERRC(faulty.pread(buf.data(), 4096, 0), Errc::io_error);
  CHECK_OK(faulty.pwrite(data.data(), 4096, 0, false));
  faulty.fail_reads = false;

  faulty.fail_writes = true;
  const auto other = pattern(4096, 0, 2);
  CHECK_ERRC(faulty.pwrite(other.data(), 4096, 0, false), Errc::io_error);
  CHECK_FALSE(faulty.zero(0, 4096, false, false).is_ok());
  faulty.fail_writes = false;
  REQUIRE_OK(faulty.pread(buf.data(), 4096, 0));
  CHECK(buf == data);

  faulty.writes_no_space = true;
  CHECK_ERRC(faulty.pwrite(other.data(), 4096, 0, false), Errc::no_space);
}
