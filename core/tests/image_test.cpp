// SPDX-License-Identifier: BSD-3-Clause
// image_test.cpp — frozen reads of a taken snapshot, writable images, the begin_write path, changed ranges.
#include "image.h"

#include <doctest/doctest.h>

#include <atomic>
#include <random>
#include <thread>

#include "engine.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;
using namespace std::chrono_literals;

namespace {

// A memory device that remembers the largest single read, to see how copy-on-write splits a chunk.
class ReadSizeRecorder final : public BlockDevice {
 public:
  explicit ReadSizeRecorder(uint64_t size) : inner_(size) {}
  uint64_t size() const override { return inner_.size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override {
    uint64_t seen = largest_read.load();
    while (len > seen && !largest_read.compare_exchange_weak(seen, len)) {
    }
    return inner_.pread(buf, len, offset);
  }
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    return inner_.pwrite(buf, len, offset, fua);
  }
  Status flush() override { return Status::ok(); }
  std::atomic<uint64_t> largest_read{0};

 private:
  MemoryDevice inner_;
};

std::shared_ptr<Image> take_one(Engine& engine, const TempDir& dir, const std::string& origin,
                                const std::string& name, uint64_t storage, bool writable = false) {
  SnapshotOptions options = snapshot_options({origin}, dir, name + ".diff", storage);
  options.writable = writable;
  REQUIRE_OK(engine.create_snapshot(name, options));
  REQUIRE_OK(engine.take_snapshot(name));
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image(origin, name, image));
  return image;
}

}  // namespace

TEST_CASE("image read returns take-time data under concurrent writes") {
  TempDir dir;
  EngineConfig config = small_config(14);  // 16 KiB chunks
  config.copy_io_size = 4 * KiB;
  config.chunk_buffer_budget = 128 * KiB;
  Engine engine(config);
  attach_memory_origin(engine, "disk0", 2 * MiB);
  auto origin = engine.find_origin("disk0");
  auto image = take_one(engine, dir, "disk0", "s", 4 * MiB);
  const auto frozen = pattern(2 * MiB, 0, 1);

  std::atomic<int> writers_done{0};
  std::vector<std::thread> writers;
  for (uint32_t w = 0; w < 3; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937_64 random(w + 100);
      for (int i = 0; i < 300; ++i) {
        const uint64_t len = 1 + random() % (40 * KiB);
        const uint64_t offset = random() % (2 * MiB - len);
        const auto data = pattern(len, offset, 10 + w);
        CHECK(origin->write(data.data(), len, offset, false).is_ok());
      }
      ++writers_done;
    });
  }
  std::mt19937_64 random(7);
  int reads = 0;
  int mismatches = 0;
  while (writers_done < 3 || reads < 300) {
    const uint64_t len = 1 + random() % (48 * KiB);
    const uint64_t offset = random() % (2 * MiB - len);
    std::vector<uint8_t> buf(len);
    REQUIRE_OK(image->read(buf.data(), len, offset));
    if (!std::equal(buf.begin(), buf.end(), frozen.begin() + static_cast<ptrdiff_t>(offset))) {
      if (++mismatches <= 5)
        MESSAGE("image read at " << offset << " length " << len << " differs from take time");
    }
    ++reads;
  }
  for (auto& writer : writers) writer.join();
  CHECK(mismatches == 0);
  CHECK(first_difference(read_image(*image, 2 * MiB, 0), frozen) == -1);
}

TEST_CASE("image reads spanning chunks at unaligned offsets return take-time data") {
  TempDir dir;
  Engine engine(small_config(14));
  attach_memory_origin(engine, "disk0", MiB);
  auto origin = engine.find_origin("disk0");
  auto image = take_one(engine, dir, "disk0", "s", 2 * MiB);
  // Change every other chunk, plus a write that straddles two chunks.
  for (uint64_t chunk = 0; chunk < 64; chunk += 2) {
    const auto data = pattern(3000, chunk * 16 * KiB + 100, 2);
    REQUIRE_OK(origin->write(data.data(), data.size(), chunk * 16 * KiB + 100, false));
  }
  const auto straddle = pattern(1000, 16 * KiB * 9 - 500, 3);
  REQUIRE_OK(origin->write(straddle.data(), straddle.size(), 16 * KiB * 9 - 500, false));
  const auto frozen = pattern(MiB, 0, 1);
  for (const auto& range : std::vector<std::pair<uint64_t, uint64_t>>{{0, MiB},
                                                                      {1, 1},
                                                                      {16 * KiB - 1, 2},
                                                                      {16 * KiB - 7, 3 * 16 * KiB + 11},
                                                                      {100, 3000},
                                                                      {MiB - 1, 1},
                                                                      {8 * 16 * KiB + 3, 2 * 16 * KiB},
                                                                      {513, 511}}) {
    const uint64_t offset = range.first, len = range.second;  // (clang 14 cannot capture structured bindings)
    CAPTURE(offset);
    CAPTURE(len);
    const auto got = read_image(*image, len, offset);
    CHECK(first_difference(
              got, std::vector<uint8_t>(frozen.begin() + static_cast<ptrdiff_t>(offset),
                                        frozen.begin() + static_cast<ptrdiff_t>(offset + len))) == -1);
  }
}

TEST_CASE("image I/O past the end is out of range") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  auto image = take_one(engine, dir, "disk0", "s", MiB);
  std::vector<uint8_t> buf(8192);
  CHECK_ERRC(image->read(buf.data(), 8192, MiB - 4096), Errc::out_of_range);
  CHECK_ERRC(image->read(buf.data(), 1, MiB), Errc::out_of_range);
}

TEST_CASE("the partial last chunk of an odd-sized origin is preserved") {
  TempDir dir;
  Engine engine(small_config(16));
  const uint64_t size = MiB + 1000;
  attach_memory_origin(engine, "odd", size);
  auto origin = engine.find_origin("odd");
  auto image = take_one(engine, dir, "odd", "s", 2 * MiB);
  CHECK(image->size() == size);
  const auto data = pattern(1500, size - 1500, 2);
  REQUIRE_OK(origin->write(data.data(), data.size(), size - 1500, false));
  CHECK(read_image(*image, 3000, size - 3000) == pattern(3000, size - 3000, 1));
  CHECK(read_origin(*origin, 1500, size - 1500) == data);
}

TEST_CASE("an image of a snapshot that is not writable refuses writes") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  auto image = take_one(engine, dir, "disk0", "s", MiB);
  CHECK_FALSE(image->writable());
  std::vector<uint8_t> buf(4096, 9);
  CHECK_ERRC(image->write(buf.data(), 4096, 0), Errc::read_only);
  CHECK_ERRC(image->zero(0, 4096), Errc::read_only);
  CHECK(read_image(*image, 4096, 0) == pattern(4096, 0, 1));
}

TEST_CASE("writable snapshot image writes never change the origin") {
  TempDir dir;
  Engine engine(small_config(14));
  attach_memory_origin(engine, "disk0", MiB);
  auto origin = engine.find_origin("disk0");
  auto image = take_one(engine, dir, "disk0", "s", 2 * MiB, true);
  CHECK(image->writable());
  SnapshotInfo info;
  REQUIRE_OK(engine.snapshot_info("s", info));
  CHECK(info.writable);

  // An unaligned write across a chunk boundary, and a zeroed range.
  const uint64_t offset = 16 * KiB * 3 - 1000;
  const auto mine = pattern(5000, offset, 50);
  REQUIRE_OK(image->write(mine.data(), mine.size(), offset));
  REQUIRE_OK(image->zero(200000, 20000));
  auto expected = pattern(MiB, 0, 1);
  std::copy(mine.begin(), mine.end(), expected.begin() + static_cast<ptrdiff_t>(offset));
  std::fill(expected.begin() + 200000, expected.begin() + 220000, 0);
  CHECK(first_difference(read_image(*image, MiB, 0), expected) == -1);
  CHECK(first_difference(read_origin(*origin, MiB, 0), pattern(MiB, 0, 1)) == -1);

  // Origin writes to the same chunks afterwards do not overwrite the image's own data.
  const auto later = pattern(64 * KiB, 16 * KiB * 2, 60);
  REQUIRE_OK(origin->write(later.data(), later.size(), 16 * KiB * 2, false));
  const auto zero_later = pattern(30000, 195000, 61);
  REQUIRE_OK(origin->write(zero_later.data(), zero_later.size(), 195000, false));
  CHECK(first_difference(read_image(*image, MiB, 0), expected) == -1);
}

TEST_CASE("a chunk larger than the copy size is copied in several reads") {
  TempDir dir;
  EngineConfig config = small_config(18);  // 256 KiB chunks
  config.copy_io_size = 64 * KiB;
  Engine engine(config);
  auto device = std::make_shared<ReadSizeRecorder>(2 * MiB);
  fill_device(*device, 1);
  REQUIRE_OK(engine.attach_origin("disk0", device, false));
  auto origin = engine.find_origin("disk0");
  auto image = take_one(engine, dir, "disk0", "s", 4 * MiB);
  device->largest_read = 0;
  const auto data = pattern(512, 300 * KiB, 2);
  REQUIRE_OK(origin->write(data.data(), data.size(), 300 * KiB, false));
  CHECK(device->largest_read.load() <= 64 * KiB);
  CHECK(device->largest_read.load() > 0);
  CHECK(first_difference(read_image(*image, 512 * KiB, 256 * KiB), pattern(512 * KiB, 256 * KiB, 1)) == -1);
}

TEST_CASE("a front end writing on its own path after begin_write keeps the image intact") {
  TempDir dir;
  Engine engine(small_config(14));
  // The nbdkit filter's case: the engine has no device, every call names the source (nbdkit's next).
  auto next = std::make_shared<MemoryDevice>(MiB);
  fill_device(*next, 1);
  REQUIRE_OK(engine.attach_origin("disk0", nullptr, false, MiB));
  auto origin = engine.find_origin("disk0");
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 2 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));

  std::vector<std::thread> writers;
  for (uint32_t w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      for (uint64_t i = 0; i < 40; ++i) {
        const uint64_t offset = (i * 23 + w * 11) % 60 * 16 * KiB + 777;
        const auto data = pattern(9000, offset, 2 + w);
        Origin::WriteGuard guard;
        CHECK(origin->begin_write(offset, data.size(), next.get(), guard).is_ok());
        CHECK(next->pwrite(data.data(), data.size(), offset, false).is_ok());
        guard.release();
      }
    });
  }
  for (auto& writer : writers) writer.join();
  std::vector<uint8_t> got(MiB);
  REQUIRE_OK(image->read(got.data(), got.size(), 0, next.get()));
  CHECK(first_difference(got, pattern(MiB, 0, 1)) == -1);
  std::vector<Range> changed;
  REQUIRE_OK(engine.cbt_map("disk0", "", changed));
  CHECK_FALSE(changed.empty());
}

TEST_CASE("begin_write refuses a range past the end") {
  Engine engine(small_config());
  REQUIRE_OK(engine.attach_origin("disk0", nullptr, false, MiB));
  auto next = std::make_shared<MemoryDevice>(MiB);
  Origin::WriteGuard guard;
  CHECK_ERRC(engine.find_origin("disk0")->begin_write(MiB - 100, 4096, next.get(), guard),
             Errc::out_of_range);
}

TEST_CASE("an image lists blocks changed since a checkpoint whose snapshot was destroyed") {
  TempDir dir;
  Engine engine(small_config(14));
  attach_memory_origin(engine, "disk0", 4 * MiB);
  auto origin = engine.find_origin("disk0");
  take_one(engine, dir, "disk0", "full", 4 * MiB);
  REQUIRE_OK(engine.destroy_snapshot("full"));

  const uint64_t block = 4 * KiB;  // small_config's tracking blocks
  const auto data = pattern(10000, 100000, 2);
  REQUIRE_OK(origin->write(data.data(), data.size(), 100000, false));
  REQUIRE_OK(origin->zero(3 * MiB, block, false, false));
  auto image = take_one(engine, dir, "disk0", "inc", 4 * MiB);
  // A write after the take is not in the image's map.
  REQUIRE_OK(origin->write(data.data(), data.size(), MiB, false));

  std::vector<Range> changed;
  REQUIRE_OK(image->changed_since("full", 0, 4 * MiB, changed));
  const uint64_t first = 100000 / block * block;
  const uint64_t end = (110000 + block - 1) / block * block;
  CHECK(changed == std::vector<Range>{{first, end - first}, {3 * MiB, block}});
  CHECK(image->usable_checkpoints() == std::vector<std::string>{"full"});
  CHECK(image->cbt().number == 2);
  CHECK(image->cbt().checkpoints.count("inc") == 1);
  CHECK_ERRC(image->changed_since("inc", 0, 4 * MiB, changed), Errc::not_found);
  CHECK_ERRC(image->changed_since("never", 0, 4 * MiB, changed), Errc::not_found);

  // Clipped to a window.
  REQUIRE_OK(image->changed_since("full", first + block, 2 * block, changed));
  CHECK(changed == std::vector<Range>{{first + block, std::min(2 * block, end - first - block)}});

  // The live map since the checkpoint also has the write made after the take.
  REQUIRE_OK(engine.cbt_map("disk0", "full", changed));
  CHECK(changed.size() == 3);
  REQUIRE_OK(engine.cbt_map("disk0", "inc", changed));
  CHECK(changed == std::vector<Range>{{MiB, (10000 + block - 1) / block * block}});
}

TEST_CASE("image extents cover the requested range") {
  TempDir dir;
  Engine engine(small_config(14));
  auto device = std::make_shared<MemoryDevice>(MiB);
  REQUIRE_OK(engine.attach_origin("disk0", device, false));
  auto origin = engine.find_origin("disk0");
  const auto data = pattern(4096, 64 * KiB, 1);
  REQUIRE_OK(origin->write(data.data(), data.size(), 64 * KiB, false));
  auto image = take_one(engine, dir, "disk0", "s", 2 * MiB);
  REQUIRE_OK(origin->write(data.data(), data.size(), 128 * KiB, false));
  std::vector<Extent> extents;
  REQUIRE_OK(image->extents(0, MiB, extents));
  REQUIRE_FALSE(extents.empty());
  uint64_t next = 0;
  for (const Extent& extent : extents) {
    CHECK(extent.offset == next);
    next = extent.offset + extent.length;
    // What the take saw as data is never reported as a hole.
    if (extent.offset < 64 * KiB + 4096 && next > 64 * KiB) CHECK_FALSE(extent.hole);
    if (extent.hole) {
      std::vector<uint8_t> zeroes(extent.length);
      REQUIRE_OK(image->read(zeroes.data(), zeroes.size(), extent.offset));
      CHECK(zeroes == std::vector<uint8_t>(extent.length, 0));
    }
  }
  CHECK(next == MiB);
}

TEST_CASE("take waits for a write in flight on the front end's own path and the image holds it") {
  TempDir dir;
  Engine engine(small_config(14));
  auto next = std::make_shared<MemoryDevice>(MiB);
  fill_device(*next, 1);
  REQUIRE_OK(engine.attach_origin("disk0", nullptr, false, MiB));
  auto origin = engine.find_origin("disk0");
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 2 * MiB)));

  Origin::WriteGuard guard;
  REQUIRE_OK(origin->begin_write(8192, 4096, next.get(), guard));
  std::atomic<bool> taken{false};
  std::thread taker([&] {
    CHECK(engine.take_snapshot("s").is_ok());
    taken = true;
  });
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(taken);  // the write is still in flight
  const auto data = pattern(4096, 8192, 2);
  REQUIRE_OK(next->pwrite(data.data(), data.size(), 8192, false));
  guard.release();
  taker.join();
  REQUIRE(taken);

  // Written before the switch, so the image has it; a write after the take does not show.
  const auto after = pattern(4096, 8192, 3);
  Origin::WriteGuard second;
  REQUIRE_OK(origin->begin_write(8192, 4096, next.get(), second));
  REQUIRE_OK(next->pwrite(after.data(), after.size(), 8192, false));
  second.release();
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));
  std::vector<uint8_t> got(4096);
  REQUIRE_OK(image->read(got.data(), got.size(), 8192, next.get()));
  CHECK(got == data);
}

TEST_CASE("image writes racing with origin writes to the same chunks keep the image's own data") {
  TempDir dir;
  EngineConfig config = small_config(14);  // 16 KiB chunks
  config.chunk_buffer_budget = 48 * KiB;   // some chunks wait in memory, others are stored by the writer
  Engine engine(config);
  attach_memory_origin(engine, "disk0", MiB);
  auto origin = engine.find_origin("disk0");
  auto image = take_one(engine, dir, "disk0", "s", 2 * MiB, true);
  std::thread image_writer([&] {
    // Every other 4 KiB block, in an order that meets the origin writer in the middle.
    for (uint64_t block = 0; block < 256; block += 2) {
      const uint64_t offset = (block * 37 % 256) / 2 * 2 * 4 * KiB;
      const auto data = pattern(4 * KiB, offset, 50);
      CHECK(image->write(data.data(), data.size(), offset).is_ok());
    }
  });
  std::thread origin_writer([&] {
    for (uint64_t block = 0; block < 256; ++block) {
      const uint64_t offset = (255 - block) * 4 * KiB + 100;
      const uint64_t length = std::min<uint64_t>(6 * KiB, MiB - offset);
      const auto data = pattern(length, offset, 60);
      CHECK(origin->write(data.data(), length, offset, false).is_ok());
    }
  });
  image_writer.join();
  origin_writer.join();
  auto expected = pattern(MiB, 0, 1);
  for (uint64_t offset = 0; offset < MiB; offset += 8 * KiB) {
    const auto data = pattern(4 * KiB, offset, 50);
    std::copy(data.begin(), data.end(), expected.begin() + static_cast<ptrdiff_t>(offset));
  }
  CHECK(first_difference(read_image(*image, MiB, 0), expected) == -1);
  auto origin_expected = pattern(MiB, 0, 1);
  for (uint64_t block = 0; block < 256; ++block) {
    const uint64_t offset = (255 - block) * 4 * KiB + 100;
    const uint64_t length = std::min<uint64_t>(6 * KiB, MiB - offset);
    const auto data = pattern(length, offset, 60);
    std::copy(data.begin(), data.end(), origin_expected.begin() + static_cast<ptrdiff_t>(offset));
  }
  CHECK(first_difference(read_origin(*origin, MiB, 0), origin_expected) == -1);
}
