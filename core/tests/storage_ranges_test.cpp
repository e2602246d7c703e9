// SPDX-License-Identifier: BSD-3-Clause
// storage_ranges_test.cpp — difference storage as ranges of files (blksnap v4 takes sector ranges of any
// block device): several ranges of one file in one snapshot and across snapshots, each chunk landing inside
// its range, and every overlap (with an origin, another snapshot's storage, the snapshot's own areas)
// refused.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "file_device.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

// A file of `size` bytes, every byte 0xEE, so bytes nbdsnap never wrote show.
std::string make_filled_file(const TempDir& dir, const std::string& name, uint64_t size) {
  const std::string path = dir.file(name);
  std::ofstream out(path, std::ios::binary);
  const std::vector<char> block(MiB, static_cast<char>(0xEE));
  for (uint64_t done = 0; done < size; done += MiB)
    out.write(block.data(), static_cast<std::streamsize>(std::min(MiB, size - done)));
  return path;
}

std::vector<uint8_t> file_range_bytes(const std::string& path, uint64_t offset, uint64_t length) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<uint8_t> out(length);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(length));
  return out;
}

// A sparse device that says it is a given file (as a second open of that file would).
class DeviceNamed final : public BlockDevice {
 public:
  explicit DeviceNamed(std::string identity) : inner_(MiB), identity_(std::move(identity)) {}
  uint64_t size() const override { return inner_.size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override { return inner_.pread(buf, len, offset); }
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    return inner_.pwrite(buf, len, offset, fua);
  }
  Status flush() override { return Status::ok(); }
  std::string file_identity() const override { return identity_; }

 private:
  MemoryDevice inner_;
  const std::string identity_;
};

SnapshotOptions options_with(const std::vector<std::string>& origins, std::vector<StorageSpec> storage) {
  SnapshotOptions options;
  options.origins = origins;
  options.storage = std::move(storage);
  return options;
}

// Writes version 2 of the pattern over `chunks` chunks of the origin, one 4 KiB write per chunk.
void touch_chunks(Origin& origin, uint64_t chunks) {
  for (uint64_t i = 0; i < chunks; ++i) {
    const auto data = pattern(4096, i * kChunk, 2);
    REQUIRE_OK(origin.write(data.data(), 4096, i * kChunk, false));
  }
}

}  // namespace

TEST_CASE("two ranges of one file hold a snapshot's chunks, and nothing outside them is written") {
  TempDir dir;
  const std::string file = make_filled_file(dir, "shared.img", 8 * MiB);
  EngineConfig config = small_config();
  config.chunk_buffer_budget = 0;  // every chunk goes straight to storage
  Engine engine(config);
  attach_memory_origin(engine, "disk0", 4 * MiB);
  // 1 MiB at 1 MiB and 1 MiB at 4 MiB: 32 chunks in all, the second range used once the first is full.
  REQUIRE_OK(engine.create_snapshot(
      "s", options_with({"disk0"}, {storage_range(file, MiB, MiB), storage_range(file, 4 * MiB, MiB)})));
  SnapshotInfo info;
  REQUIRE_OK(engine.snapshot_info("s", info));
  REQUIRE(info.storage.size() == 2);
  CHECK(info.storage[0].offset == MiB);
  CHECK(info.storage[0].size == MiB);
  CHECK(info.storage[1].offset == 4 * MiB);
  CHECK(info.storage_total == 2 * MiB);
  REQUIRE_OK(engine.take_snapshot("s"));
  auto origin = engine.find_origin("disk0");
  touch_chunks(*origin, 24);
  REQUIRE_OK(engine.snapshot_info("s", info));
  CHECK(info.state == SnapshotState::taken);
  CHECK(info.storage_used == 24 * kChunk);

  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));
  CHECK(read_image(*image, 4 * MiB, 0) == pattern(4 * MiB, 0, 1));
  // The first range is full of old chunks; the second holds the rest; outside them the file is untouched.
  const std::vector<uint8_t> untouched(MiB, 0xEE);
  CHECK(file_range_bytes(file, 0, MiB) == untouched);
  CHECK(file_range_bytes(file, 2 * MiB, MiB) == untouched);
  CHECK(file_range_bytes(file, 3 * MiB, MiB) == untouched);
  CHECK(file_range_bytes(file, 4 * MiB + 8 * kChunk, MiB - 8 * kChunk) ==
        std::vector<uint8_t>(MiB - 8 * kChunk, 0xEE));
  CHECK(file_range_bytes(file, 5 * MiB, 3 * MiB) == std::vector<uint8_t>(3 * MiB, 0xEE));
  CHECK(file_range_bytes(file, MiB, kChunk) != std::vector<uint8_t>(kChunk, 0xEE));
  CHECK(file_range_bytes(file, 4 * MiB, kChunk) != std::vector<uint8_t>(kChunk, 0xEE));
  REQUIRE_OK(engine.destroy_snapshot("s"));
  CHECK(std::filesystem::exists(file));  // a range is never removed with the snapshot
}

TEST_CASE("ranges of one file may serve two snapshots, and the file stays locked while either lives") {
  TempDir dir;
  const std::string file = make_filled_file(dir, "shared.img", 4 * MiB);
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  attach_memory_origin(engine, "disk1", MiB);
  REQUIRE_OK(engine.create_snapshot("a", options_with({"disk0"}, {storage_range(file, 0, 2 * MiB)})));
  REQUIRE_OK(
      engine.create_snapshot("b", options_with({"disk1"}, {storage_range(file, 2 * MiB, 0)})));  // to the end
  SnapshotInfo info;
  REQUIRE_OK(engine.snapshot_info("b", info));
  CHECK(info.storage[0].size == 2 * MiB);
  REQUIRE_OK(engine.take_snapshot("a"));
  REQUIRE_OK(engine.take_snapshot("b"));
  touch_chunks(*engine.find_origin("disk0"), 8);
  touch_chunks(*engine.find_origin("disk1"), 8);
  REQUIRE_OK(engine.destroy_snapshot("a"));
  std::unique_ptr<FileDevice> again;
  CHECK_ERRC(FileDevice::open(file, false, again), Errc::already_exists);  // b still holds the file's lock
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk1", "b", image));
  CHECK(read_image(*image, MiB, 0) == pattern(MiB, 0, 1));
  REQUIRE_OK(engine.destroy_snapshot("b"));
  CHECK_OK(FileDevice::open(file, false, again));  // the last user let go
}

TEST_CASE("overlapping ranges are refused, in one snapshot and across snapshots") {
  TempDir dir;
  const std::string file = make_filled_file(dir, "shared.img", 4 * MiB);
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  attach_memory_origin(engine, "disk1", MiB);
  Status s = engine.create_snapshot(
      "a", options_with({"disk0"}, {storage_range(file, 0, 2 * MiB), storage_range(file, MiB, MiB)}));
  CHECK(s.code() == Errc::already_exists);
  CHECK(s.message().find("already in this snapshot's storage") != std::string::npos);
  SnapshotInfo info;
  CHECK_ERRC(engine.snapshot_info("a", info), Errc::not_found);

  REQUIRE_OK(engine.create_snapshot("a", options_with({"disk0"}, {storage_range(file, MiB, MiB)})));
  CHECK_ERRC(engine.append_storage("a", storage_range(file, 2 * MiB - 1, 1)), Errc::already_exists);
  REQUIRE_OK(engine.append_storage("a", storage_range(file, 2 * MiB, MiB)));  // touching is not overlapping
  s = engine.create_snapshot("b", options_with({"disk1"}, {storage_range(file, 0, MiB + 4096)}));
  CHECK(s.code() == Errc::already_exists);
  CHECK(s.message().find("difference storage of snapshot 'a'") != std::string::npos);
  CHECK_ERRC(engine.create_snapshot("b", options_with({"disk1"}, {StorageSpec{file}})), Errc::already_exists);
  REQUIRE_OK(engine.create_snapshot("b", options_with({"disk1"}, {storage_range(file, 0, MiB)})));
  REQUIRE_OK(engine.snapshot_info("a", info));
  CHECK(info.storage.size() == 2);
}

TEST_CASE(
    "storage overlapping an origin's file is refused before it is opened, and an origin in storage too") {
  TempDir dir;
  const std::string disk = make_filled_file(dir, "disk.img", 4 * MiB);
  const std::string other = make_filled_file(dir, "other.img", 4 * MiB);
  Engine engine(small_config());
  std::unique_ptr<FileDevice> file;
  REQUIRE_OK(FileDevice::open(disk, false, file));
  REQUIRE_OK(engine.attach_origin("disk0", std::shared_ptr<BlockDevice>(std::move(file)), false));
  const Status s = engine.create_snapshot("s", options_with({"disk0"}, {storage_range(disk, 3 * MiB, MiB)}));
  CHECK(s.code() == Errc::already_exists);
  CHECK(s.message().find("overlaps origin 'disk0'") != std::string::npos);
  // Through another name of the same file (a hard link).
  std::filesystem::create_hard_link(disk, dir.file("link.img"));
  CHECK_ERRC(
      engine.create_snapshot("s", options_with({"disk0"}, {storage_range(dir.file("link.img"), 0, MiB)})),
      Errc::already_exists);
  // The other way round: a file a range of which is storage cannot become an origin (its lock refuses a
  // second open; the engine refuses its identity even from a device that is not locked).
  REQUIRE_OK(engine.create_snapshot("s", options_with({"disk0"}, {storage_range(other, MiB, MiB)})));
  std::unique_ptr<FileDevice> second;
  CHECK_ERRC(FileDevice::open(other, false, second), Errc::already_exists);
  std::string identity;
  REQUIRE_OK(FileDevice::identity_of(other, identity));
  const Status attach = engine.attach_origin("disk1", std::make_shared<DeviceNamed>(identity), false);
  CHECK(attach.code() == Errc::already_exists);
  CHECK(attach.message().find("bytes 1048576..2097151 of it is difference storage of snapshot 's'") !=
        std::string::npos);
}

TEST_CASE("ranges beyond the end of the file, of a missing file, or mixed with a size are refused in words") {
  TempDir dir;
  const std::string file = make_filled_file(dir, "small.img", 2 * MiB);
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  Status s = engine.create_snapshot("s", options_with({"disk0"}, {storage_range(file, MiB, 2 * MiB)}));
  CHECK(s.code() == Errc::out_of_range);
  CHECK(s.message().find("ends at byte 3145728 but " + file + " has only 2097152 bytes") !=
        std::string::npos);
  s = engine.create_snapshot("s", options_with({"disk0"}, {storage_range(file, 2 * MiB, 0)}));
  CHECK(s.code() == Errc::out_of_range);
  CHECK(s.message().find("starts at byte 2097152") != std::string::npos);
  s = engine.create_snapshot("s", options_with({"disk0"}, {storage_range(dir.file("missing.img"), 0, MiB)}));
  CHECK(s.code() == Errc::not_found);
  CHECK(s.message().find("a range needs an existing file or block device") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.file("missing.img")));
  StorageSpec mixed = storage_range(file, 0, MiB);
  mixed.size = MiB;
  CHECK_ERRC(engine.create_snapshot("s", options_with({"disk0"}, {mixed})), Errc::invalid_argument);
  std::unique_ptr<FileDevice> reopened;
  CHECK_OK(FileDevice::open(file, false, reopened));  // nothing refused kept the file open
}
