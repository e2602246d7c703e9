// SPDX-License-Identifier: BSD-3-Clause
// error_codes_test.cpp — what corrupted a snapshot, per origin, as an errno with words (blksnap's
// SNAPSHOTINFO error_code and the corrupted event's err_code), and storage too small for one chunk refused up
// front, so that "difference storage is full" never comes with nothing used.
#include <doctest/doctest.h>

#include <cerrno>
#include <filesystem>

#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;
using namespace std::chrono_literals;

namespace {

void write_chunks(Origin& origin, uint64_t first, uint64_t count) {
  for (uint64_t i = first; i < first + count; ++i) {
    const auto data = pattern(4096, i * kChunk, 2);
    CHECK_OK(origin.write(data.data(), data.size(), i * kChunk, false));  // never failed by the snapshot
  }
}

}  // namespace

TEST_CASE("an origin read failure gives that origin EIO in snapshot info and in the corrupted event") {
  TempDir dir;
  Engine engine(small_config());
  auto memory = std::make_shared<MemoryDevice>(MiB);
  fill_device(*memory, 1);
  auto faulty = std::make_shared<FaultyDevice>(memory);
  REQUIRE_OK(engine.attach_origin("disk0", faulty, false));
  attach_memory_origin(engine, "disk1", MiB);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0", "disk1"}, dir, "diff", 2 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  const uint64_t before = engine.events().last_sequence();
  faulty->fail_reads = true;
  write_chunks(*engine.find_origin("disk0"), 0, 1);
  faulty->fail_reads = false;

  const SnapshotInfo info = snapshot_info_of(engine, "s");
  CHECK(info.state == SnapshotState::corrupted);
  REQUIRE(info.origin_errors.size() == 1);
  CHECK(info.origin_errors[0].origin == "disk0");
  CHECK(info.origin_errors[0].error_code == EIO);
  CHECK(info.origin_errors[0].reason.find("copy-on-write read of the origin failed") == 0);
  const auto event = wait_for_event(engine.events(), EventType::corrupted, before, 5s, "s");
  REQUIRE(event.has_value());
  CHECK(event->origin == "disk0");
  CHECK(event->error_code == EIO);
}

TEST_CASE("a storage write failure gives the origin whose chunk it was EIO") {
  TempDir dir;
  EngineConfig config = small_config();
  config.chunk_buffer_budget = 0;  // the writer stores the chunk itself
  std::shared_ptr<FaultyDevice> storage;
  config.wrap_storage_device = [&storage](std::shared_ptr<BlockDevice> device) {
    storage = std::make_shared<FaultyDevice>(std::move(device));
    return storage;
  };
  Engine engine(config);
  attach_memory_origin(engine, "disk0", MiB);
  attach_memory_origin(engine, "disk1", MiB);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0", "disk1"}, dir, "diff", 2 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  write_chunks(*engine.find_origin("disk0"), 0, 1);
  storage->fail_writes = true;
  const uint64_t before = engine.events().last_sequence();
  write_chunks(*engine.find_origin("disk1"), 3, 1);

  const SnapshotInfo info = snapshot_info_of(engine, "s");
  CHECK(info.state == SnapshotState::corrupted);
  REQUIRE(info.origin_errors.size() == 1);
  CHECK(info.origin_errors[0].origin == "disk1");
  CHECK(info.origin_errors[0].error_code == EIO);
  const auto event = wait_for_event(engine.events(), EventType::corrupted, before, 5s, "s");
  REQUIRE(event.has_value());
  CHECK(event->origin == "disk1");
  CHECK(event->error_code == EIO);
}

TEST_CASE("full difference storage gives ENOSPC and says how much is used, never 0 bytes") {
  TempDir dir;
  EngineConfig config = small_config();
  config.chunk_buffer_budget = 0;
  Engine engine(config);
  attach_memory_origin(engine, "disk0", MiB);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 2 * kChunk)));
  REQUIRE_OK(engine.take_snapshot("s"));
  write_chunks(*engine.find_origin("disk0"), 0, 3);
  const SnapshotInfo info = snapshot_info_of(engine, "s");
  CHECK(info.state == SnapshotState::corrupted);
  REQUIRE(info.origin_errors.size() == 1);
  CHECK(info.origin_errors[0].error_code == ENOSPC);
  CHECK(info.corruption_reason.find("difference storage is full: 128.0 KiB of 128.0 KiB in 1 area(s)") == 0);
  CHECK(info.corruption_reason.find("0 B used") == std::string::npos);
}

TEST_CASE("a storage device that runs out of space gives ENOSPC") {
  TempDir dir;
  EngineConfig config = small_config();
  config.chunk_buffer_budget = 0;
  std::shared_ptr<FaultyDevice> storage;
  config.wrap_storage_device = [&storage](std::shared_ptr<BlockDevice> device) {
    storage = std::make_shared<FaultyDevice>(std::move(device));
    return storage;
  };
  Engine engine(config);
  attach_memory_origin(engine, "disk0", MiB);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  storage->writes_no_space = true;
  write_chunks(*engine.find_origin("disk0"), 0, 1);
  const SnapshotInfo info = snapshot_info_of(engine, "s");
  REQUIRE(info.origin_errors.size() == 1);
  CHECK(info.origin_errors[0].error_code == ENOSPC);
}

TEST_CASE("storage smaller than one chunk is refused at create and append, and no file is left behind") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  Status s = engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "tiny", kChunk - 512));
  CHECK(s.code() == Errc::invalid_argument);
  CHECK(s.message().find("holds 63.5 KiB, less than one chunk of origin 'disk0' (64.0 KiB)") !=
        std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.file("tiny")));
  SnapshotInfo info;
  CHECK_ERRC(engine.snapshot_info("s", info), Errc::not_found);

  REQUIRE_OK(
      engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", kChunk)));  // exactly one fits
  s = engine.append_storage("s", {dir.file("more"), 4096});
  CHECK(s.code() == Errc::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(dir.file("more")));
  CHECK(snapshot_info_of(engine, "s").storage.size() == 1);
}

TEST_CASE(
    "without origins, storage must hold the smallest chunk, adding an origin with larger chunks is refused") {
  TempDir dir;
  Engine engine(small_config());  // chunk-min-shift 16: no chunk is below 64 KiB
  REQUIRE_OK(engine.attach_origin("raid", std::make_shared<DeviceWithMinimumIo>(4 * MiB, MiB), false));
  CHECK_ERRC(engine.create_snapshot("s", snapshot_options({}, dir, "tiny", 32 * KiB)),
             Errc::invalid_argument);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({}, dir, "diff", 512 * KiB)));
  const Status s = engine.add_origin_to_snapshot("s", "raid");  // 1 MiB chunks do not fit a 512 KiB area
  CHECK(s.code() == Errc::bad_state);
  CHECK(s.message().find("less than one chunk of origin 'raid' (1.0 MiB)") != std::string::npos);
  CHECK(snapshot_info_of(engine, "s").origins.empty());
  REQUIRE_OK(engine.destroy_snapshot("s"));
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"raid"}, dir, "diff", MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
}

TEST_CASE("a limit smaller than one chunk is refused at create") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  SnapshotOptions options = snapshot_options({"disk0"}, dir, "diff", MiB);
  options.limit = 4096;
  const Status s = engine.create_snapshot("s", options);
  CHECK(s.code() == Errc::invalid_argument);
  CHECK(s.message() ==
        "limit 4096 (4.0 KiB) is less than one chunk of origin 'disk0' (64.0 KiB): no chunk could "
        "be stored");
  CHECK_FALSE(std::filesystem::exists(dir.file("diff")));
  options.limit = kChunk;
  REQUIRE_OK(engine.create_snapshot("s", options));
}
