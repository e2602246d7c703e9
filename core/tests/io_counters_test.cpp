// SPDX-License-Identifier: BSD-3-Clause
// io_counters_test.cpp — the engine's metrics (io_counters.h, Engine::stats): writes, reads and CBT marks per
// origin, chunks copied only once they are in difference storage (a failed copy is not counted), image
// reads, storage space, and exact counts under concurrent writers.
#include "io_counters.h"

#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "engine.h"
#include "memory_device.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;
using namespace std::chrono_literals;

namespace {

OriginCounterValues origin_counters(const Engine& engine, const std::string& name) {
  for (const OriginStats& o : engine.stats().origins) {
    if (o.name == name) return o.counters;
  }
  FAIL("no stats for origin " << name);
  return {};
}

SnapshotStats snapshot_stats(const Engine& engine, const std::string& name) {
  for (const SnapshotStats& s : engine.stats().snapshots) {
    if (s.name == name) return s;
  }
  FAIL("no stats for snapshot " << name);
  return {};
}

// Waits (bounded) until the origin's chunks_copied reaches `want`; returns the last value seen.
uint64_t wait_for_chunks_copied(const Engine& engine, const std::string& origin, uint64_t want) {
  uint64_t seen = 0;
  for (int i = 0; i < 500; ++i) {
    seen = origin_counters(engine, origin).chunks_copied;
    if (seen >= want) break;
    std::this_thread::sleep_for(10ms);
  }
  return seen;
}

void write_pattern(Origin& origin, uint64_t len, uint64_t offset, uint32_t version) {
  const auto data = pattern(len, offset, version);
  REQUIRE_OK(origin.write(data.data(), data.size(), offset, false));
}

// An engine with one 1 MiB memory origin "d" and a snapshot "s" taken with a 4 MiB storage file, whose
// storage device the test can make fail.
struct TakenSnapshot {
  explicit TakenSnapshot(uint64_t chunk_buffer_budget) : engine(config(chunk_buffer_budget, storage)) {
    attach_memory_origin(engine, "d", MiB);
    origin = engine.find_origin("d");
    REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"d"}, dir, "diff", 4 * MiB)));
    REQUIRE_OK(engine.take_snapshot("s"));
    REQUIRE_OK(engine.find_image("d", "s", image));
  }
  static EngineConfig config(uint64_t chunk_buffer_budget, std::shared_ptr<FaultyDevice>& storage) {
    EngineConfig c = small_config(16);  // 64 KiB chunks
    c.chunk_buffer_budget = chunk_buffer_budget;
    c.wrap_storage_device = [&storage](std::shared_ptr<BlockDevice> file) -> std::shared_ptr<BlockDevice> {
      storage = std::make_shared<FaultyDevice>(std::move(file));
      return storage;
    };
    return c;
  }
  TempDir dir;
  std::shared_ptr<FaultyDevice> storage;
  Engine engine;
  std::shared_ptr<Origin> origin;
  std::shared_ptr<Image> image;
};

}  // namespace

TEST_CASE("origin counters count writes, their bytes, reads and the CBT blocks they marked") {
  Engine engine(small_config(16));
  attach_memory_origin(engine, "d", MiB);
  auto origin = engine.find_origin("d");
  OriginInfo info;
  REQUIRE_OK(engine.origin_info("d", info));
  const uint64_t block = info.tracking_block_size;
  write_pattern(*origin, 8 * KiB, 0, 2);
  write_pattern(*origin, 2 * block, 4 * block, 2);
  REQUIRE_OK(origin->zero(10 * block + 10, KiB, false, false));  // one block, not block-aligned
  (void)read_origin(*origin, 4 * KiB, 0);
  std::vector<uint8_t> buf(KiB);
  CHECK_FALSE(origin->read(buf.data(), buf.size(), MiB).is_ok());  // beyond the end: not counted
  const OriginCounterValues c = origin_counters(engine, "d");
  CHECK(c.writes == 3);
  CHECK(c.bytes_written == 8 * KiB + 2 * block + KiB);
  CHECK(c.cbt_blocks_marked == (8 * KiB + block - 1) / block + 2 + 1);
  CHECK(c.reads == 1);
  CHECK(c.bytes_read == 4 * KiB);
  CHECK(c.chunks_copied == 0);  // no snapshot
  CHECK(c.copy_on_write_ns == 0);
}

TEST_CASE("chunks copied straight to storage are counted with their bytes and the time the copy took") {
  TakenSnapshot t(0);  // no buffer budget: writers store their chunks themselves
  write_pattern(*t.origin, 128 * KiB, 0, 2);
  write_pattern(*t.origin, 4 * KiB, 0, 3);  // the chunk is copied already: nothing more
  const OriginCounterValues c = origin_counters(t.engine, "d");
  CHECK(c.chunks_copied == 2);
  CHECK(c.bytes_copied == 128 * KiB);
  SnapshotInfo info;
  REQUIRE_OK(t.engine.snapshot_info("s", info));
  CHECK(info.chunks_copied == 2);
  CHECK(c.copy_on_write_ns > 0);
  const SnapshotStats s = snapshot_stats(t.engine, "s");
  CHECK(s.state == "taken");
  CHECK(s.storage_used == 128 * KiB);
  CHECK(s.storage_total == 4 * MiB);
  CHECK(s.storage_free == 4 * MiB - 128 * KiB);
}

TEST_CASE("chunks held in memory are counted once the writeback stored them") {
  TakenSnapshot t(MiB);
  write_pattern(*t.origin, 256 * KiB, 0, 2);
  CHECK(wait_for_chunks_copied(t.engine, "d", 4) == 4);
  CHECK(origin_counters(t.engine, "d").bytes_copied == 256 * KiB);
}

TEST_CASE("a copy that failed in storage is not counted as copied") {
  TakenSnapshot t(0);
  t.storage->fail_writes = true;
  write_pattern(*t.origin, 64 * KiB, 0, 2);  // the origin write succeeds; the snapshot is corrupted
  const OriginCounterValues c = origin_counters(t.engine, "d");
  CHECK(c.writes == 1);
  CHECK(c.chunks_copied == 0);
  CHECK(c.bytes_copied == 0);
  CHECK(snapshot_stats(t.engine, "s").state == "corrupted");
  SnapshotInfo info;  // `snapshot info` agrees with the counters (it counted the failed chunk once)
  REQUIRE_OK(t.engine.snapshot_info("s", info));
  CHECK(info.chunks_copied == 0);
}

TEST_CASE("a writeback that failed is not counted as copied") {
  TakenSnapshot t(MiB);
  t.storage->writes_no_space = true;
  write_pattern(*t.origin, 64 * KiB, 0, 2);
  for (int i = 0; i < 500 && snapshot_stats(t.engine, "s").state != "corrupted"; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(snapshot_stats(t.engine, "s").state == "corrupted");
  CHECK(origin_counters(t.engine, "d").chunks_copied == 0);
  SnapshotInfo info;
  REQUIRE_OK(t.engine.snapshot_info("s", info));
  CHECK(info.chunks_copied == 0);
}

TEST_CASE("image reads that succeed are counted per image, failed ones are not") {
  TakenSnapshot t(0);
  std::vector<uint8_t> buf(8 * KiB);
  REQUIRE_OK(t.image->read(buf.data(), 4 * KiB, 0));
  REQUIRE_OK(t.image->read(buf.data(), 8 * KiB, 512 * KiB));
  CHECK_FALSE(t.image->read(buf.data(), 4 * KiB, MiB).is_ok());
  const SnapshotStats s = snapshot_stats(t.engine, "s");
  REQUIRE(s.images.size() == 1);
  CHECK(s.images[0].origin == "d");
  CHECK(s.images[0].counters.reads == 2);
  CHECK(s.images[0].counters.bytes_read == 12 * KiB);
  // Once corrupted, reads fail and are not counted.
  t.storage->fail_writes = true;
  write_pattern(*t.origin, 4 * KiB, 0, 2);
  CHECK_FALSE(t.image->read(buf.data(), 4 * KiB, 0).is_ok());
  CHECK(snapshot_stats(t.engine, "s").images[0].counters.reads == 2);
}

TEST_CASE("concurrent writers are all counted") {
  Engine engine(small_config(16));
  attach_memory_origin(engine, "d", MiB);
  auto origin = engine.find_origin("d");
  constexpr int kThreads = 4, kWrites = 500;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      const auto data = pattern(4 * KiB, 0, 2);
      for (int i = 0; i < kWrites; ++i)
        (void)origin->write(data.data(), data.size(), (t * 64 + i % 64) * 4 * KiB, false);
    });
  }
  std::thread reader([&] {
    for (int i = 0; i < 200; ++i) (void)engine.stats();  // reading while writers count
  });
  for (auto& w : writers) w.join();
  reader.join();
  const OriginCounterValues c = origin_counters(engine, "d");
  CHECK(c.writes == kThreads * kWrites);
  CHECK(c.bytes_written == uint64_t{kThreads} * kWrites * 4 * KiB);
}

TEST_CASE("an origin's counters start at zero when it is attached again") {
  Engine engine(small_config(16));
  attach_memory_origin(engine, "d", MiB);
  write_pattern(*engine.find_origin("d"), 4 * KiB, 0, 2);
  REQUIRE_OK(engine.detach_origin("d", false));
  CHECK(engine.stats().origins.empty());
  attach_memory_origin(engine, "d", MiB);
  CHECK(origin_counters(engine, "d").writes == 0);
}
