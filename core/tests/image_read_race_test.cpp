// SPDX-License-Identifier: BSD-3-Clause
// image_read_race_test.cpp — image reads and extents racing first-touch writes of the chunks they cover: the
// image reads untouched chunks from the origin in one read per run of chunks and looks at the chunk map
// again afterwards (chunk_map.h); these tests fail if that second look is missing or incomplete.
#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <random>
#include <thread>

#include "engine.h"
#include "image.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

// A memory device that runs a hook, once, inside the next pread or extents call after it was armed, before
// the call reads the device: a write the hook makes lands in the middle of that call.
class HookedDevice final : public BlockDevice {
 public:
  explicit HookedDevice(uint64_t size) : inner_(size) {}
  uint64_t size() const override { return inner_.size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override {
    run_hook();
    if (slow_reads) std::this_thread::yield();  // widens the window between the read and the look after it
    return inner_.pread(buf, len, offset);
  }
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    return inner_.pwrite(buf, len, offset, fua);
  }
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override {
    return inner_.zero(offset, len, may_trim, fua);
  }
  Status flush() override { return Status::ok(); }
  Status extents(uint64_t offset, uint64_t len, std::vector<Extent>& out) override {
    run_hook();
    return inner_.extents(offset, len, out);
  }
  void arm(std::function<void()> hook) {
    hook_ = std::move(hook);
    armed_ = true;
  }
  std::atomic<bool> slow_reads{false};

 private:
  void run_hook() {
    if (armed_.exchange(false)) hook_();  // disarmed first: the hook's own copy-on-write reads pass
  }
  MemoryDevice inner_;
  std::function<void()> hook_;
  std::atomic<bool> armed_{false};
};

struct Fixture {
  static constexpr uint64_t kChunk = 16 * KiB;
  static constexpr uint64_t kSize = 2 * MiB;
  TempDir dir;
  Engine engine{small_config(14)};  // 16 KiB chunks
  std::shared_ptr<HookedDevice> device = std::make_shared<HookedDevice>(kSize);
  std::shared_ptr<Origin> origin;
  std::shared_ptr<Image> image;
  std::vector<uint8_t> frozen = pattern(kSize, 0, 1);

  Fixture() {
    fill_device(*device, 1);
    REQUIRE_OK(engine.attach_origin("disk0", device, false));
    origin = engine.find_origin("disk0");
    REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "s.diff", 2 * kSize)));
    REQUIRE_OK(engine.take_snapshot("s"));
    REQUIRE_OK(engine.find_image("disk0", "s", image));
  }
  std::vector<uint8_t> frozen_range(uint64_t offset, uint64_t len) const {
    return {frozen.begin() + static_cast<ptrdiff_t>(offset),
            frozen.begin() + static_cast<ptrdiff_t>(offset + len)};
  }
};

}  // namespace

TEST_CASE("an image read over untouched chunks returns take-time data when a write lands during its read") {
  Fixture f;
  // One read of chunks 0..7 (untouched: one origin read); during it, the first write to chunk 5 copies the
  // chunk and changes the origin, before the read reads the origin.
  const uint64_t written = 5 * Fixture::kChunk + 100;
  const auto data = pattern(3000, written, 2);
  f.device->arm([&] { CHECK_OK(f.origin->write(data.data(), data.size(), written, false)); });
  const auto got = read_image(*f.image, 8 * Fixture::kChunk, 0);
  CHECK(first_difference(got, f.frozen_range(0, 8 * Fixture::kChunk)) == -1);
  CHECK(first_difference(read_origin(*f.origin, data.size(), written), data) == -1);  // the write landed
}

TEST_CASE("an unaligned image read returns take-time data when writes land at both of its ends meanwhile") {
  Fixture f;
  const uint64_t offset = 3 * Fixture::kChunk - 7, len = 4 * Fixture::kChunk + 11;  // chunks 2..6, partly
  const auto head = pattern(20, 2 * Fixture::kChunk, 3);
  const auto tail = pattern(20, 6 * Fixture::kChunk + 10, 3);
  f.device->arm([&] {
    CHECK_OK(f.origin->write(head.data(), head.size(), 3 * Fixture::kChunk - 10, false));
    CHECK_OK(f.origin->write(tail.data(), tail.size(), 6 * Fixture::kChunk + 10, false));
  });
  CHECK(first_difference(read_image(*f.image, len, offset), f.frozen_range(offset, len)) == -1);
}

TEST_CASE("image extents do not report a hole over a chunk the origin punched during the query") {
  Fixture f;
  // The origin holds data everywhere at take; during the extents query of the image, chunk 3 is zeroed with
  // holes allowed, so the origin's answer says hole there. The image's chunk 3 is still take-time data.
  f.device->arm([&] { CHECK_OK(f.origin->zero(3 * Fixture::kChunk, Fixture::kChunk, true, false)); });
  std::vector<Extent> extents;
  REQUIRE_OK(f.image->extents(0, 8 * Fixture::kChunk, extents));
  uint64_t next = 0;
  for (const Extent& e : extents) {
    CHECK(e.offset == next);
    next = e.offset + e.length;
    CHECK_FALSE(e.hole);
    CHECK_FALSE(e.zero);
  }
  CHECK(next == 8 * Fixture::kChunk);
  // The origin did get its hole, so the check above is about the image, not the device.
  std::vector<Extent> origin_extents;
  REQUIRE_OK(f.device->extents(3 * Fixture::kChunk, Fixture::kChunk, origin_extents));
  REQUIRE(origin_extents.size() == 1);
  CHECK(origin_extents[0].hole);
}

TEST_CASE("image reads spanning many chunks return take-time data while writers touch chunks first") {
  // 4 KiB chunks, so that a read of up to 256 KiB spans up to 64 of them; several snapshots in a row, since a
  // chunk is touched first only once per snapshot.
  constexpr uint64_t kChunk = 4 * KiB, kSize = 4 * MiB;
  constexpr int kWriters = 2, kRounds = 4;
  TempDir dir;
  Engine engine(small_config(12));
  auto device = std::make_shared<HookedDevice>(kSize);
  fill_device(*device, 1);
  device->slow_reads = true;
  REQUIRE_OK(engine.attach_origin("disk0", device, false));
  auto origin = engine.find_origin("disk0");
  int mismatches = 0;
  for (int round = 0; round < kRounds; ++round) {
    const std::string name = "s" + std::to_string(round);
    const auto frozen = read_origin(*origin, kSize, 0);
    REQUIRE_OK(engine.create_snapshot(name, snapshot_options({"disk0"}, dir, name + ".diff", 2 * kSize)));
    REQUIRE_OK(engine.take_snapshot(name));
    std::shared_ptr<Image> image;
    REQUIRE_OK(engine.find_image("disk0", name, image));
    std::atomic<int> writers_done{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        std::mt19937_64 random(static_cast<uint64_t>(round * kWriters + w) + 31);
        std::vector<uint64_t> chunks(kSize / kChunk);  // every chunk once, in random order
        for (uint64_t i = 0; i < chunks.size(); ++i) chunks[i] = i;
        std::shuffle(chunks.begin(), chunks.end(), random);
        for (uint64_t chunk : chunks) {
          const uint64_t offset = chunk * kChunk + random() % (kChunk - 512);
          const auto data = pattern(512, offset, static_cast<uint32_t>(10 + round * kWriters + w));
          CHECK_OK(origin->write(data.data(), data.size(), offset, false));
        }
        ++writers_done;
      });
    }
    std::mt19937_64 random(static_cast<uint64_t>(round) + 5);
    while (writers_done < kWriters) {
      const uint64_t len = 1 + random() % (256 * KiB);
      const uint64_t offset = random() % (kSize - len);
      std::vector<uint8_t> buf(len);
      REQUIRE_OK(image->read(buf.data(), len, offset));
      if (!std::equal(buf.begin(), buf.end(), frozen.begin() + static_cast<ptrdiff_t>(offset)) &&
          ++mismatches <= 5)
        MESSAGE("image read at " << offset << " length " << len << " differs from take time");
    }
    for (auto& writer : writers) writer.join();
    CHECK(first_difference(read_image(*image, kSize, 0), frozen) == -1);
    image.reset();
    REQUIRE_OK(engine.destroy_snapshot(name));
  }
  CHECK(mismatches == 0);
}
