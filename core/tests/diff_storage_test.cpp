// SPDX-License-Identifier: BSD-3-Clause
// diff_storage_test.cpp — difference storage: bump allocation over areas, limit, low-space signal, release.
#include "diff_storage.h"

#include <doctest/doctest.h>

#include <fstream>

#include "memory_device.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

TEST_CASE("difference storage hands out pieces area after area without straddling") {
  DiffStorage storage(0, 0, nullptr);
  storage.append_device(std::make_shared<MemoryDevice>(100 * KiB), "a");
  storage.append_device(std::make_shared<MemoryDevice>(64 * KiB), "b");
  CHECK(storage.total() == 164 * KiB);
  StorageLocation first, second, third;
  REQUIRE_OK(storage.allocate(64 * KiB, first));
  REQUIRE_OK(storage.allocate(64 * KiB, second));  // 36 KiB left in a: goes to b
  CHECK(first.area == 0);
  CHECK(first.offset == 0);
  CHECK(second.area == 1);
  CHECK(second.offset == 0);
  CHECK(storage.used() == 128 * KiB);
  CHECK_ERRC(storage.allocate(64 * KiB, third), Errc::no_space);

  const auto data = pattern(64 * KiB, 0, 3);
  REQUIRE_OK(storage.write(second, data.data(), 1000, 0));
  REQUIRE_OK(storage.write(second, data.data() + 1000, data.size() - 1000, 1000));
  std::vector<uint8_t> back(64 * KiB);
  REQUIRE_OK(storage.read(second, back.data(), back.size(), 0));
  CHECK(back == data);
}

TEST_CASE("a storage limit caps allocation below the areas' size") {
  DiffStorage storage(128 * KiB, 0, nullptr);
  storage.append_device(std::make_shared<MemoryDevice>(1024 * KiB), "a");
  CHECK(storage.limit() == 128 * KiB);
  StorageLocation at;
  REQUIRE_OK(storage.allocate(64 * KiB, at));
  REQUIRE_OK(storage.allocate(64 * KiB, at));
  CHECK(storage.free_bytes() == 0);
  CHECK_ERRC(storage.allocate(4 * KiB, at), Errc::no_space);
}

TEST_CASE("low free space is signalled once until storage is appended") {
  std::vector<uint64_t> signals;
  DiffStorage storage(0, 64 * KiB, [&signals](uint64_t requested) { signals.push_back(requested); });
  storage.append_device(std::make_shared<MemoryDevice>(256 * KiB), "a");
  StorageLocation at;
  REQUIRE_OK(storage.allocate(64 * KiB, at));
  REQUIRE_OK(storage.allocate(64 * KiB, at));
  CHECK(signals.empty());  // 128 KiB free
  REQUIRE_OK(storage.allocate(96 * KiB, at));
  REQUIRE(signals.size() == 1);  // 32 KiB free
  CHECK(signals[0] >= 64 * KiB);
  REQUIRE_OK(storage.allocate(16 * KiB, at));
  CHECK(signals.size() == 1);
  storage.append_device(std::make_shared<MemoryDevice>(64 * KiB), "b");
  REQUIRE_OK(storage.allocate(64 * KiB, at));
  CHECK(signals.size() == 2);
}

TEST_CASE("storage files are created and released, and only created files are removed") {
  TempDir dir;
  {
    std::ofstream out(dir.file("existing"), std::ios::binary);
    out << std::string(64 * KiB, 'x');
  }
  DiffStorage storage(0, 0, nullptr);
  REQUIRE_OK(storage.append({dir.file("new"), 128 * KiB}));
  REQUIRE_OK(storage.append({dir.file("existing"), 0}));
  CHECK_ERRC(storage.append({dir.file("new"), 128 * KiB}), Errc::already_exists);
  CHECK_FALSE(storage.append({dir.file("missing-with-no-size"), 0}).is_ok());
  const auto areas = storage.areas();
  REQUIRE(areas.size() == 2);
  CHECK(areas[0].created_by_engine);
  CHECK(areas[0].size == 128 * KiB);
  CHECK_FALSE(areas[1].created_by_engine);
  CHECK(areas[1].size == 64 * KiB);
  CHECK(storage.total() == 192 * KiB);
  storage.release();
  CHECK_FALSE(std::filesystem::exists(dir.file("new")));
  CHECK(std::filesystem::exists(dir.file("existing")));
}

TEST_CASE("a failing storage device reports errors on write and read") {
  auto faulty = std::make_shared<FaultyDevice>(std::make_shared<MemoryDevice>(64 * KiB));
  DiffStorage storage(0, 0, nullptr);
  storage.append_device(faulty, "faulty");
  StorageLocation at;
  REQUIRE_OK(storage.allocate(4 * KiB, at));
  std::vector<uint8_t> buf(4 * KiB, 1);
  faulty->fail_writes = true;
  CHECK_FALSE(storage.write(at, buf.data(), buf.size(), 0).is_ok());
  faulty->fail_writes = false;
  faulty->writes_no_space = true;
  CHECK_FALSE(storage.write(at, buf.data(), buf.size(), 0).is_ok());
  faulty->writes_no_space = false;
  faulty->fail_reads = true;
  CHECK_FALSE(storage.read(at, buf.data(), buf.size(), 0).is_ok());
}
