// SPDX-License-Identifier: BSD-3-Clause
// snapshot_test.cpp — snapshot lifecycle, refusals, atomic take, overflow, append, and injected I/O errors.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

#include "engine.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;
using namespace std::chrono_literals;

namespace {

std::string snapshot_of(Engine& engine, const std::string& origin) {
  OriginInfo info;
  REQUIRE_OK(engine.origin_info(origin, info));
  return info.snapshot;
}

// Writes 4 KiB of version `version` at the start of chunk `index`.
void touch_chunk(Origin& origin, uint64_t index, uint32_t version) {
  const auto data = pattern(4096, index * kChunk, version);
  REQUIRE_OK(origin.write(data.data(), data.size(), index * kChunk, false));
}

// The origin's expected content after touching chunks [0, touched) with version 2 over version 1.
std::vector<uint8_t> expected_after_touch(uint64_t size, uint64_t touched) {
  auto expected = pattern(size, 0, 1);
  for (uint64_t i = 0; i < touched; ++i) {
    const auto data = pattern(4096, i * kChunk, 2);
    std::copy(data.begin(), data.end(), expected.begin() + static_cast<ptrdiff_t>(i * kChunk));
  }
  return expected;
}

// Lowers the file size limit of the process so every file write fails with EFBIG, for the life of the object.
class FileWritesFail {
 public:
  FileWritesFail() {
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_) == 0);
    rlimit none = old_;
    none.rlim_cur = 0;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &none) == 0);
  }
  ~FileWritesFail() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    ::signal(SIGXFSZ, old_handler_);
  }
  FileWritesFail(const FileWritesFail&) = delete;
  FileWritesFail& operator=(const FileWritesFail&) = delete;

 private:
  rlimit old_{};
  sighandler_t old_handler_ = SIG_DFL;
};

}  // namespace

TEST_CASE("a snapshot goes from created to taken to destroyed") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", 2 * MiB);
  const uint64_t start = engine.events().last_sequence();
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 4 * MiB)));

  SnapshotInfo info = snapshot_info_of(engine, "s");
  CHECK(info.name == "s");
  CHECK(info.state == SnapshotState::created);
  CHECK_FALSE(info.writable);
  CHECK(info.origins == std::vector<std::string>{"disk0"});
  REQUIRE(info.storage.size() == 1);
  CHECK(info.storage[0].path == dir.file("diff"));
  CHECK(info.storage[0].size == 4 * MiB);
  CHECK(info.storage[0].created_by_engine);
  CHECK(info.storage_total == 4 * MiB);
  CHECK(info.storage_used == 0);
  CHECK(info.chunks_copied == 0);
  CHECK(info.taken_unix_ms == 0);
  CHECK(std::filesystem::exists(dir.file("diff")));
  CHECK(snapshot_of(engine, "disk0") == "s");
  std::shared_ptr<Image> image;
  CHECK_ERRC(engine.find_image("disk0", "s", image), Errc::not_found);
  CHECK(engine.image_export_names().empty());

  REQUIRE_OK(engine.take_snapshot("s"));
  info = snapshot_info_of(engine, "s");
  CHECK(info.state == SnapshotState::taken);
  CHECK(info.taken_unix_ms > 0);
  CHECK(engine.image_export_names() == std::vector<std::string>{"disk0@s"});
  REQUIRE_OK(engine.find_image("disk0", "s", image));
  CHECK(image->origin_name() == "disk0");
  CHECK(image->snapshot_name() == "s");
  CHECK(image->size() == 2 * MiB);
  CHECK_FALSE(image->writable());
  const auto taken = wait_for_event(engine.events(), EventType::snapshot_taken, start, 1s, "s");
  CHECK(taken.has_value());
  CHECK(std::string(snapshot_state_name(SnapshotState::taken)) == "taken");

  REQUIRE_OK(engine.destroy_snapshot("s"));
  CHECK_ERRC(engine.snapshot_info("s", info), Errc::not_found);
  CHECK(engine.snapshots().empty());
  CHECK(engine.image_export_names().empty());
  CHECK(snapshot_of(engine, "disk0").empty());
  CHECK_FALSE(std::filesystem::exists(dir.file("diff")));
  CHECK(wait_for_event(engine.events(), EventType::snapshot_destroyed, start, 1s, "s").has_value());
}

TEST_CASE("snapshot state names are the protocol's names") {
  CHECK(std::string(snapshot_state_name(SnapshotState::created)) == "created");
  CHECK(std::string(snapshot_state_name(SnapshotState::taken)) == "taken");
  CHECK(std::string(snapshot_state_name(SnapshotState::corrupted)) == "corrupted");
}

TEST_CASE("storage the engine did not create survives destroy") {
  TempDir dir;
  {
    std::ofstream out(dir.file("mine"), std::ios::binary);
    out << std::string(MiB, '\0');
  }
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  SnapshotOptions options;
  options.origins = {"disk0"};
  options.storage = {{dir.file("mine"), 0}};
  REQUIRE_OK(engine.create_snapshot("s", options));
  SnapshotInfo info = snapshot_info_of(engine, "s");
  REQUIRE(info.storage.size() == 1);
  CHECK(info.storage[0].size == MiB);
  CHECK_FALSE(info.storage[0].created_by_engine);
  REQUIRE_OK(engine.take_snapshot("s"));
  touch_chunk(*engine.find_origin("disk0"), 0, 2);
  REQUIRE_OK(engine.destroy_snapshot("s"));
  CHECK(std::filesystem::exists(dir.file("mine")));
}

TEST_CASE("a snapshot name that exists already is refused") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  attach_memory_origin(engine, "disk1", MiB);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff0", MiB)));
  CHECK_ERRC(engine.create_snapshot("s", snapshot_options({"disk1"}, dir, "diff1", MiB)),
             Errc::already_exists);
  CHECK(snapshot_of(engine, "disk1").empty());
  CHECK(engine.snapshots().size() == 1);
  CHECK_FALSE(std::filesystem::exists(dir.file("diff1")));
}

TEST_CASE("bad snapshot names are refused") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  for (const char* bad : {"", ".s", "a@b", "a/b"}) {
    CAPTURE(bad);
    CHECK_ERRC(engine.create_snapshot(bad, snapshot_options({"disk0"}, dir, "diff", MiB)),
               Errc::invalid_argument);
  }
  CHECK(engine.snapshots().empty());
  CHECK(snapshot_of(engine, "disk0").empty());
}

TEST_CASE("create with an unknown origin is not found and creates nothing") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  CHECK_ERRC(engine.create_snapshot("s", snapshot_options({"disk0", "ghost"}, dir, "diff", MiB)),
             Errc::not_found);
  CHECK(engine.snapshots().empty());
  CHECK(snapshot_of(engine, "disk0").empty());
  CHECK_FALSE(std::filesystem::exists(dir.file("diff")));
}

TEST_CASE("create with storage in a missing directory fails and creates nothing") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  CHECK_FALSE(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "no/such/diff", MiB)).is_ok());
  CHECK(engine.snapshots().empty());
  CHECK(snapshot_of(engine, "disk0").empty());
}

TEST_CASE("an origin in one snapshot cannot join another") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  attach_memory_origin(engine, "disk1", MiB);
  REQUIRE_OK(engine.create_snapshot("a", snapshot_options({"disk0"}, dir, "diff-a", MiB)));
  const Status second = engine.create_snapshot("b", snapshot_options({"disk1", "disk0"}, dir, "diff-b", MiB));
  CHECK_MESSAGE((second.code() == Errc::busy || second.code() == Errc::already_exists), second.to_string());
  SnapshotInfo missing;
  CHECK_ERRC(engine.snapshot_info("b", missing), Errc::not_found);
  CHECK(snapshot_of(engine, "disk1").empty());

  REQUIRE_OK(engine.create_snapshot("c", snapshot_options({"disk1"}, dir, "diff-c", MiB)));
  const Status add = engine.add_origin_to_snapshot("c", "disk0");
  CHECK_MESSAGE((add.code() == Errc::busy || add.code() == Errc::already_exists), add.to_string());
  CHECK(snapshot_of(engine, "disk0") == "a");
  CHECK(snapshot_info_of(engine, "c").origins == std::vector<std::string>{"disk1"});

  // Taken or not, the rule holds; after destroy the origin is free again.
  REQUIRE_OK(engine.take_snapshot("a"));
  REQUIRE_OK(engine.destroy_snapshot("a"));
  REQUIRE_OK(engine.add_origin_to_snapshot("c", "disk0"));
  CHECK(snapshot_info_of(engine, "c").origins.size() == 2);
}

TEST_CASE("adding an origin twice is refused") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", MiB)));
  const Status again = engine.add_origin_to_snapshot("s", "disk0");
  CHECK_MESSAGE((again.code() == Errc::already_exists || again.code() == Errc::busy), again.to_string());
  CHECK(snapshot_info_of(engine, "s").origins == std::vector<std::string>{"disk0"});
  SnapshotOptions twice = snapshot_options({"disk0", "disk0"}, dir, "diff2", MiB);
  CHECK_FALSE(engine.create_snapshot("t", twice).is_ok());
  CHECK(engine.snapshots().size() == 1);
}

TEST_CASE("add and remove work before take and are refused after") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  attach_memory_origin(engine, "disk1", MiB);
  attach_memory_origin(engine, "disk2", MiB);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 4 * MiB)));
  REQUIRE_OK(engine.add_origin_to_snapshot("s", "disk1"));
  REQUIRE_OK(engine.add_origin_to_snapshot("s", "disk2"));
  REQUIRE_OK(engine.remove_origin_from_snapshot("s", "disk2"));
  CHECK(snapshot_of(engine, "disk2").empty());
  CHECK(snapshot_of(engine, "disk1") == "s");
  CHECK_ERRC(engine.remove_origin_from_snapshot("s", "disk2"), Errc::not_found);
  CHECK_ERRC(engine.add_origin_to_snapshot("s", "ghost"), Errc::not_found);
  CHECK_ERRC(engine.add_origin_to_snapshot("ghost", "disk2"), Errc::not_found);
  CHECK_ERRC(engine.remove_origin_from_snapshot("ghost", "disk0"), Errc::not_found);

  REQUIRE_OK(engine.take_snapshot("s"));
  CHECK_ERRC(engine.add_origin_to_snapshot("s", "disk2"), Errc::bad_state);
  CHECK_ERRC(engine.remove_origin_from_snapshot("s", "disk1"), Errc::bad_state);
  auto names = engine.image_export_names();
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"disk0@s", "disk1@s"});
}

TEST_CASE("take is refused twice and for unknown snapshots, and destroy of an unknown one is not found") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  CHECK_ERRC(engine.take_snapshot("s"), Errc::bad_state);
  CHECK_ERRC(engine.take_snapshot("ghost"), Errc::not_found);
  CHECK_ERRC(engine.destroy_snapshot("ghost"), Errc::not_found);
  StorageSpec spec{dir.file("more"), MiB};
  CHECK_ERRC(engine.append_storage("ghost", spec), Errc::not_found);
  CHECK_FALSE(std::filesystem::exists(dir.file("more")));
  SnapshotInfo info;
  CHECK_ERRC(engine.snapshot_info("ghost", info), Errc::not_found);
  std::shared_ptr<Image> image;
  CHECK_ERRC(engine.find_image("disk0", "ghost", image), Errc::not_found);
}

TEST_CASE("a created snapshot can be destroyed without being taken") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", MiB)));
  REQUIRE_OK(engine.destroy_snapshot("s"));
  CHECK(snapshot_of(engine, "disk0").empty());
  CHECK_FALSE(std::filesystem::exists(dir.file("diff")));
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", MiB)));
}

TEST_CASE("snapshots lists every snapshot") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  attach_memory_origin(engine, "disk1", MiB);
  REQUIRE_OK(engine.create_snapshot("a", snapshot_options({"disk0"}, dir, "diff-a", MiB)));
  REQUIRE_OK(engine.create_snapshot("b", snapshot_options({"disk1"}, dir, "diff-b", MiB)));
  REQUIRE_OK(engine.take_snapshot("b"));
  const auto all = engine.snapshots();
  REQUIRE(all.size() == 2);
  for (const SnapshotInfo& info : all) {
    if (info.name == "a") CHECK(info.state == SnapshotState::created);
    if (info.name == "b") CHECK(info.state == SnapshotState::taken);
  }
}

TEST_CASE("take freezes all origins of a snapshot at one instant") {
  TempDir dir;
  Engine engine(small_config(12));
  attach_memory_origin(engine, "a", MiB);
  attach_memory_origin(engine, "b", MiB);
  auto a = engine.find_origin("a");
  auto b = engine.find_origin("b");
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> written{0};
  std::thread writer([&] {
    // Writes counter i to a, then to b: at any instant a holds i and b holds i or i-1.
    for (uint64_t i = 1; !stop; ++i) {
      CHECK(a->write(&i, sizeof i, 0, false).is_ok());
      CHECK(b->write(&i, sizeof i, 0, false).is_ok());
      written = i;
    }
  });
  for (int round = 0; round < 20; ++round) {
    const std::string name = "t" + std::to_string(round);
    REQUIRE_OK(engine.create_snapshot(name, snapshot_options({"a", "b"}, dir, name, MiB)));
    while (written.load() < static_cast<uint64_t>(round) * 10 + 3) std::this_thread::yield();
    REQUIRE_OK(engine.take_snapshot(name));
    std::shared_ptr<Image> image_a;
    std::shared_ptr<Image> image_b;
    REQUIRE_OK(engine.find_image("a", name, image_a));
    REQUIRE_OK(engine.find_image("b", name, image_b));
    uint64_t value_a = 0;
    uint64_t value_b = 0;
    REQUIRE_OK(image_a->read(&value_a, sizeof value_a, 0));
    REQUIRE_OK(image_b->read(&value_b, sizeof value_b, 0));
    CAPTURE(value_a);
    CAPTURE(value_b);
    CHECK((value_a == value_b || value_a == value_b + 1));
    REQUIRE_OK(engine.destroy_snapshot(name));
  }
  stop = true;
  writer.join();
}

TEST_CASE("overflowing storage corrupts the snapshot, not the origin") {
  TempDir dir;
  EngineConfig config = small_config(16);
  config.low_space_threshold = 2 * kChunk;
  config.chunk_buffer_budget = 4 * kChunk;
  Engine engine(config);
  attach_memory_origin(engine, "disk0", 4 * MiB);  // 64 chunks
  auto origin = engine.find_origin("disk0");
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 4 * kChunk)));
  REQUIRE_OK(engine.take_snapshot("s"));
  const uint64_t start = engine.events().last_sequence();
  for (uint64_t i = 0; i < 64; ++i) touch_chunk(*origin, i, 2);

  const auto corrupted = wait_for_event(engine.events(), EventType::corrupted, start, 10s, "s");
  REQUIRE(corrupted.has_value());
  CHECK_FALSE(corrupted->reason.empty());
  const auto low = wait_for_event(engine.events(), EventType::low_free_space, start, 0ms, "s");
  REQUIRE(low.has_value());
  CHECK(low->sequence < corrupted->sequence);
  CHECK(low->requested_bytes > 0);

  const SnapshotInfo info = snapshot_info_of(engine, "s");
  CHECK(info.state == SnapshotState::corrupted);
  CHECK_FALSE(info.corruption_reason.empty());
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));
  std::vector<uint8_t> buf(4096);
  CHECK_ERRC(image->read(buf.data(), buf.size(), 0), Errc::corrupted);
  CHECK_ERRC(image->read(buf.data(), buf.size(), 63 * kChunk), Errc::corrupted);

  // Every origin write landed, and more writes still do.
  touch_chunk(*origin, 10, 3);
  auto expected = expected_after_touch(4 * MiB, 64);
  const auto again = pattern(4096, 10 * kChunk, 3);
  std::copy(again.begin(), again.end(), expected.begin() + static_cast<ptrdiff_t>(10 * kChunk));
  CHECK(first_difference(read_origin(*origin, 4 * MiB, 0), expected) == -1);

  REQUIRE_OK(engine.destroy_snapshot("s"));
  CHECK_FALSE(std::filesystem::exists(dir.file("diff")));
}

TEST_CASE("a storage limit below the storage size overflows like full storage") {
  TempDir dir;
  EngineConfig config = small_config(16);
  config.chunk_buffer_budget = 4 * kChunk;
  Engine engine(config);
  attach_memory_origin(engine, "disk0", 2 * MiB);  // 32 chunks
  auto origin = engine.find_origin("disk0");
  SnapshotOptions options = snapshot_options({"disk0"}, dir, "diff", 4 * MiB);
  options.limit = 4 * kChunk;
  REQUIRE_OK(engine.create_snapshot("s", options));
  CHECK(snapshot_info_of(engine, "s").storage_limit == 4 * kChunk);
  REQUIRE_OK(engine.take_snapshot("s"));
  for (uint64_t i = 0; i < 32; ++i) touch_chunk(*origin, i, 2);
  REQUIRE(wait_for_event(engine.events(), EventType::corrupted, 0, 10s, "s").has_value());
  const SnapshotInfo info = snapshot_info_of(engine, "s");
  CHECK(info.state == SnapshotState::corrupted);
  CHECK(info.storage_used <= 4 * kChunk);
  std::vector<uint8_t> buf(512);
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));
  CHECK_ERRC(image->read(buf.data(), buf.size(), 0), Errc::corrupted);
  CHECK(first_difference(read_origin(*origin, 2 * MiB, 0), expected_after_touch(2 * MiB, 32)) == -1);
}

TEST_CASE("appending storage after a low free space event avoids corruption") {
  TempDir dir;
  EngineConfig config = small_config(16);
  config.low_space_threshold = 3 * kChunk;
  config.chunk_buffer_budget = 2 * kChunk;
  Engine engine(config);
  attach_memory_origin(engine, "disk0", 4 * MiB);
  auto origin = engine.find_origin("disk0");
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 8 * kChunk)));
  REQUIRE_OK(engine.take_snapshot("s"));
  const uint64_t start = engine.events().last_sequence();
  for (uint64_t i = 0; i < 6; ++i) touch_chunk(*origin, i, 2);  // 2 chunks of space left
  const auto low = wait_for_event(engine.events(), EventType::low_free_space, start, 10s, "s");
  REQUIRE(low.has_value());
  CHECK(low->requested_bytes > 0);

  const uint64_t before_append = engine.events().last_sequence();
  REQUIRE_OK(engine.append_storage("s", {dir.file("more"), 2 * MiB}));
  const auto appended = wait_for_event(engine.events(), EventType::storage_appended, before_append, 1s, "s");
  REQUIRE(appended.has_value());
  CHECK(appended->bytes == 2 * MiB);
  SnapshotInfo info = snapshot_info_of(engine, "s");
  CHECK(info.storage.size() == 2);
  CHECK(info.storage_total == 8 * kChunk + 2 * MiB);

  for (uint64_t i = 6; i < 36; ++i) touch_chunk(*origin, i, 2);  // 36 chunks in 40 chunks of storage
  CHECK_FALSE(wait_for_event(engine.events(), EventType::corrupted, start, 300ms, "s").has_value());
  info = snapshot_info_of(engine, "s");
  CHECK(info.state == SnapshotState::taken);
  CHECK(info.chunks_copied == 36);
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));
  CHECK(first_difference(read_image(*image, 4 * MiB, 0), pattern(4 * MiB, 0, 1)) == -1);

  REQUIRE_OK(engine.destroy_snapshot("s"));
  CHECK_FALSE(std::filesystem::exists(dir.file("diff")));
  CHECK_FALSE(std::filesystem::exists(dir.file("more")));
}

TEST_CASE("appending storage in a missing directory fails and changes nothing") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "disk0", MiB);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  CHECK_FALSE(engine.append_storage("s", {dir.file("no/such/more"), MiB}).is_ok());
  const SnapshotInfo info = snapshot_info_of(engine, "s");
  CHECK(info.storage.size() == 1);
  CHECK(info.storage_total == MiB);
}

TEST_CASE("an origin read error during copy-on-write corrupts the snapshot and the write still lands") {
  TempDir dir;
  Engine engine(small_config(16));
  auto memory = std::make_shared<MemoryDevice>(MiB);
  fill_device(*memory, 1);
  auto faulty = std::make_shared<FaultyDevice>(memory);
  REQUIRE_OK(engine.attach_origin("disk0", faulty, false));
  auto origin = engine.find_origin("disk0");
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 2 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  touch_chunk(*origin, 0, 2);  // copied fine

  faulty->fail_reads = true;
  const auto data = pattern(4096, 3 * kChunk, 2);
  CHECK_OK(origin->write(data.data(), data.size(), 3 * kChunk, false));
  faulty->fail_reads = false;

  const auto corrupted = wait_for_event(engine.events(), EventType::corrupted, 0, 5s, "s");
  REQUIRE(corrupted.has_value());
  CHECK_FALSE(corrupted->reason.empty());
  CHECK(snapshot_info_of(engine, "s").state == SnapshotState::corrupted);
  CHECK(read_origin(*origin, 4096, 3 * kChunk) == data);
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));
  std::vector<uint8_t> buf(4096);
  CHECK_ERRC(image->read(buf.data(), buf.size(), 0), Errc::corrupted);
  CHECK_ERRC(image->read(buf.data(), buf.size(), 3 * kChunk), Errc::corrupted);
  touch_chunk(*origin, 5, 2);
  CHECK(read_origin(*origin, 4096, 5 * kChunk) == pattern(4096, 5 * kChunk, 2));
}

TEST_CASE("a storage write error corrupts the snapshot and origin writes still land") {
  TempDir dir;
  EngineConfig config = small_config(16);
  config.chunk_buffer_budget = 2 * kChunk;
  Engine engine(config);
  attach_memory_origin(engine, "disk0", MiB);
  auto origin = engine.find_origin("disk0");
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 2 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  std::optional<Event> corrupted;
  {
    // The storage is a file opened by path, so the failure comes from the kernel: RLIMIT_FSIZE 0 makes
    // every write to a regular file fail with EFBIG.
    FileWritesFail fail;
    for (uint64_t i = 0; i < 8; ++i) {
      const auto data = pattern(4096, i * kChunk, 2);
      CHECK(origin->write(data.data(), data.size(), i * kChunk, false).is_ok());
    }
    corrupted = wait_for_event(engine.events(), EventType::corrupted, 0, 5s, "s");
  }
  REQUIRE(corrupted.has_value());
  CHECK(snapshot_info_of(engine, "s").state == SnapshotState::corrupted);
  CHECK(first_difference(read_origin(*origin, 8 * kChunk, 0), expected_after_touch(8 * kChunk, 8)) == -1);
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));
  std::vector<uint8_t> buf(4096);
  CHECK_ERRC(image->read(buf.data(), buf.size(), 0), Errc::corrupted);
}

TEST_CASE("a new snapshot of an origin after destroy sees the newer data") {
  TempDir dir;
  Engine engine(small_config(14));
  attach_memory_origin(engine, "disk0", MiB);
  auto origin = engine.find_origin("disk0");
  for (uint32_t version = 2; version < 6; ++version) {
    const std::string name = "v" + std::to_string(version);
    REQUIRE_OK(engine.create_snapshot(name, snapshot_options({"disk0"}, dir, name, MiB)));
    REQUIRE_OK(engine.take_snapshot(name));
    const auto before = read_origin(*origin, MiB, 0);
    const auto data = pattern(100000, 300000, version);
    REQUIRE_OK(origin->write(data.data(), data.size(), 300000, false));
    std::shared_ptr<Image> image;
    REQUIRE_OK(engine.find_image("disk0", name, image));
    CHECK(first_difference(read_image(*image, MiB, 0), before) == -1);
    REQUIRE_OK(engine.destroy_snapshot(name));
  }
}

TEST_CASE("destroy waits for image readers, which then see not_found") {
  TempDir dir;
  Engine engine(small_config(12));
  attach_memory_origin(engine, "disk0", MiB);
  auto origin = engine.find_origin("disk0");
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 2 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));
  const auto frozen = pattern(MiB, 0, 1);
  std::atomic<int> not_found{0};
  std::atomic<int> wrong{0};
  std::atomic<int> good_reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      std::vector<uint8_t> buf(65536 + 512);
      for (uint64_t i = 0;; ++i) {
        const uint64_t offset = ((i * 7 + static_cast<uint64_t>(r)) % 15) * 65536 + 100;
        const Status status = image->read(buf.data(), buf.size(), offset);
        if (status.code() == Errc::not_found) {
          ++not_found;
          return;
        }
        if (!status.is_ok() ||
            !std::equal(buf.begin(), buf.end(), frozen.begin() + static_cast<ptrdiff_t>(offset)))
          ++wrong;
        ++good_reads;
      }
    });
  }
  std::thread writer([&] {
    for (uint64_t i = 0; i < 64; ++i) {
      const auto data = pattern(8192, i * 16384, 2);
      CHECK(origin->write(data.data(), data.size(), i * 16384, false).is_ok());
    }
  });
  while (good_reads < 30 && not_found == 0) std::this_thread::yield();
  writer.join();
  REQUIRE_OK(engine.destroy_snapshot("s"));
  for (auto& reader : readers) reader.join();
  CHECK(not_found == 3);
  CHECK(wrong == 0);
  std::vector<uint8_t> buf(512);
  CHECK_ERRC(image->read(buf.data(), buf.size(), 0), Errc::not_found);
  CHECK_FALSE(std::filesystem::exists(dir.file("diff")));
}

namespace {

// A memory device that can hold one read inside pread until released, to order a race deterministically.
class ReadLatchDevice final : public BlockDevice {
 public:
  explicit ReadLatchDevice(uint64_t size) : inner_(size) {}
  uint64_t size() const override { return inner_.size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override {
    if (hold_next_read.exchange(false)) {
      std::unique_lock lock(mutex_);
      held_ = true;
      changed_.notify_all();
      changed_.wait(lock, [this] { return released_; });
    }
    return inner_.pread(buf, len, offset);
  }
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    return inner_.pwrite(buf, len, offset, fua);
  }
  Status flush() override { return Status::ok(); }
  void wait_until_held() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return held_; });
  }
  void release() {
    std::scoped_lock lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }
  std::atomic<bool> hold_next_read{false};

 private:
  MemoryDevice inner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool held_ = false;      // GUARDED_BY(mutex_)
  bool released_ = false;  // GUARDED_BY(mutex_)
};

}  // namespace

TEST_CASE(
    "an image read in flight while its snapshot is destroyed never returns bytes written after the take") {
  TempDir dir;
  Engine engine(small_config(16));
  auto device = std::make_shared<ReadLatchDevice>(MiB);
  fill_device(*device, 1);
  REQUIRE_OK(engine.attach_origin("disk0", device, false));
  auto origin = engine.find_origin("disk0");
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 2 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));

  // The image read of an untouched chunk reads the origin and is held there.
  device->hold_next_read = true;
  std::vector<uint8_t> got(4096);
  Status read_status;
  std::thread reader([&] { read_status = image->read(got.data(), got.size(), 0); });
  device->wait_until_held();
  // Destroy starts while the read is in flight; an origin write to the same chunk follows.
  std::thread destroyer([&] { CHECK(engine.destroy_snapshot("s").is_ok()); });
  std::this_thread::sleep_for(100ms);
  const auto data = pattern(4096, 0, 2);
  std::thread writer([&] { CHECK(origin->write(data.data(), data.size(), 0, false).is_ok()); });
  std::this_thread::sleep_for(100ms);
  device->release();
  reader.join();
  writer.join();
  destroyer.join();
  INFO("read status: " << read_status.to_string());
  if (read_status.is_ok()) {
    CHECK(got == pattern(4096, 0, 1));
  } else {
    CHECK(read_status.code() == Errc::not_found);
  }
  CHECK(read_origin(*origin, 4096, 0) == data);
}

TEST_CASE("origin writes from several threads all land while the snapshot overflows") {
  TempDir dir;
  EngineConfig config = small_config(14);  // 16 KiB chunks
  config.chunk_buffer_budget = 64 * KiB;
  Engine engine(config);
  attach_memory_origin(engine, "disk0", 2 * MiB);
  auto origin = engine.find_origin("disk0");
  REQUIRE_OK(
      engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 256 * KiB)));  // 16 of 128 chunks
  REQUIRE_OK(engine.take_snapshot("s"));
  std::vector<std::thread> writers;
  std::atomic<int> failed_writes{0};
  for (uint64_t w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      // Each thread owns every fourth 8 KiB stripe, so the final content is known.
      for (uint64_t stripe = w; stripe < 256; stripe += 4) {
        const auto data = pattern(8 * KiB, stripe * 8 * KiB, 2);
        if (!origin->write(data.data(), data.size(), stripe * 8 * KiB, false).is_ok()) ++failed_writes;
      }
    });
  }
  for (auto& writer : writers) writer.join();
  CHECK(failed_writes == 0);
  CHECK(first_difference(read_origin(*origin, 2 * MiB, 0), pattern(2 * MiB, 0, 2)) == -1);
  REQUIRE(wait_for_event(engine.events(), EventType::corrupted, 0, 10s, "s").has_value());
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));
  std::vector<uint8_t> buf(4096);
  CHECK_ERRC(image->read(buf.data(), buf.size(), MiB), Errc::corrupted);
}

TEST_CASE(
    "an image read in flight while its origin is detached by force never returns bytes written after the "
    "take") {
  TempDir dir;
  Engine engine(small_config(16));
  auto device = std::make_shared<ReadLatchDevice>(MiB);
  fill_device(*device, 1);
  REQUIRE_OK(engine.attach_origin("disk0", device, false));
  auto origin = engine.find_origin("disk0");
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 2 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("disk0", "s", image));

  device->hold_next_read = true;
  std::vector<uint8_t> got(4096);
  Status read_status;
  std::thread reader([&] { read_status = image->read(got.data(), got.size(), 0); });
  device->wait_until_held();
  std::thread detacher([&] { CHECK(engine.detach_origin("disk0", true).is_ok()); });
  std::this_thread::sleep_for(100ms);
  // The Origin object outlives the detach here, but its gate is closed: it refuses the write. The device is
  // still written behind it (the worst case), and the image read must not return those bytes.
  const auto data = pattern(4096, 0, 2);
  CHECK_ERRC(origin->write(data.data(), data.size(), 0, false), Errc::io_error);
  std::thread writer([&] { CHECK(device->pwrite(data.data(), data.size(), 0, false).is_ok()); });
  std::this_thread::sleep_for(100ms);
  device->release();
  reader.join();
  writer.join();
  detacher.join();
  INFO("read status: " << read_status.to_string());
  if (read_status.is_ok()) {
    CHECK(got == pattern(4096, 0, 1));
  } else {
    CHECK(read_status.code() == Errc::not_found);
  }
}
