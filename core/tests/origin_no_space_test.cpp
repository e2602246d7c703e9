// SPDX-License-Identifier: BSD-3-Clause
// origin_no_space_test.cpp — invariant 2 on a full file system shared by the origin and the snapshot's sparse
// difference storage: an origin write that meets ENOSPC corrupts the snapshot, which gives back the files it
// created, and the write succeeds once more (Tracker::make_room_for_write, Snapshot::give_up_storage).
// Storage on another file system, or given as an existing file, is not the snapshot's to give: it stays.
//
// The origin is a device double that fails writes with no_space while the storage file holds blocks, as a
// file system whose last free blocks the storage took would. Before the fix every such write failed and the
// snapshot kept its storage, so writes kept failing until the snapshot was destroyed.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

#include "engine.h"
#include "extent_clone.h"
#include "file_device.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

// Blocks the file at `path` holds (st_blocks); 0 when it does not exist.
uint64_t blocks_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) : 0;
}

// An origin on a "full" file system: while `full` is set, writes and zeroes fail with no_space as long as the
// file at `space_holder` holds blocks (the space they need is the one it holds). `file` (may be null) is the
// regular file it claims to write, which tells the engine the origin's file system.
class FullFileSystemOrigin final : public BlockDevice {
 public:
  FullFileSystemOrigin(std::shared_ptr<BlockDevice> inner, std::string space_holder, const SharableFile* file)
      : inner_(std::move(inner)), space_holder_(std::move(space_holder)), file_(file) {}
  uint64_t size() const override { return inner_->size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override { return inner_->pread(buf, len, offset); }
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    if (no_room()) return {Errc::no_space, "No space left on device (test double)"};
    return inner_->pwrite(buf, len, offset, fua);
  }
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override {
    if (no_room()) return {Errc::no_space, "No space left on device (test double)"};
    return inner_->zero(offset, len, may_trim, fua);
  }
  Status flush() override { return inner_->flush(); }
  const SharableFile* sharable_file() const override { return file_; }

  std::atomic<bool> full{false};
  std::atomic<int> refused{0};  // writes failed with no_space

 private:
  bool no_room() {
    if (!full || blocks_of(space_holder_) == 0) return false;
    ++refused;
    return true;
  }
  std::shared_ptr<BlockDevice> inner_;
  const std::string space_holder_;
  const SharableFile* const file_;
};

// An engine (chunks stored synchronously: no buffer budget) with a 1 MiB origin on a FullFileSystemOrigin and
// a taken snapshot "s" whose storage is `storage` (sparse when created here). `origin_file` (may be null):
// the file the origin says it writes.
struct FullFileSystem {
  FullFileSystem(const StorageSpec& storage, const SharableFile* origin_file) : engine(config()) {
    auto memory = std::make_shared<MemoryDevice>(MiB);
    fill_device(*memory, 1);
    device = std::make_shared<FullFileSystemOrigin>(memory, storage.path, origin_file);
    REQUIRE_OK(engine.attach_origin("disk0", device, false));
    origin = engine.find_origin("disk0");
    SnapshotOptions options;
    options.origins = {"disk0"};
    options.storage = {storage};
    REQUIRE_OK(engine.create_snapshot("s", options));
    REQUIRE_OK(engine.take_snapshot("s"));
    // A first write copies chunk 0 into the storage: the file now holds blocks.
    REQUIRE_OK(origin->write(pattern(4096, 0, 2).data(), 4096, 0, false));
    REQUIRE(blocks_of(storage.path) > 0);
    device->full = true;
  }
  static EngineConfig config() {
    EngineConfig c = small_config(16);
    c.chunk_buffer_budget = 0;
    return c;
  }
  SnapshotInfo info() { return snapshot_info_of(engine, "s"); }

  Engine engine;
  std::shared_ptr<FullFileSystemOrigin> device;
  std::shared_ptr<Origin> origin;
};

StorageSpec sparse_storage(const std::string& path) {
  StorageSpec spec;
  spec.path = path;
  spec.size = 4 * MiB;
  spec.sparse = true;
  return spec;
}

// The checks every case that gives way shares: the write landed, the snapshot is corrupted with ENOSPC and a
// reason that says why, its storage holds no block, and its image fails rather than read emptied slots.
void check_gave_way(FullFileSystem& t, const std::string& storage_path) {
  CHECK(read_origin(*t.origin, 4096, 3 * kChunk) == pattern(4096, 3 * kChunk, 3));
  const SnapshotInfo info = t.info();
  CHECK(info.state == SnapshotState::corrupted);
  CHECK(info.corruption_reason.find("origin 'disk0'") != std::string::npos);
  CHECK(info.corruption_reason.find("is full") != std::string::npos);
  CHECK(info.corruption_reason.find("gave up its difference storage") != std::string::npos);
  REQUIRE(info.origin_errors.size() == 1);
  CHECK(info.origin_errors[0].error_code == ENOSPC);
  CHECK(blocks_of(storage_path) == 0);
  std::shared_ptr<Image> image;
  REQUIRE_OK(t.engine.find_image("disk0", "s", image));
  std::vector<uint8_t> buf(4096);
  CHECK_ERRC(image->read(buf.data(), 4096, 0), Errc::corrupted);  // chunk 0's slot was emptied
}

}  // namespace

TEST_CASE("an origin write meeting ENOSPC makes the snapshot give up storage it created, then succeeds") {
  TempDir dir;
  // The origin has no file the engine can see (as the nbdkit filter's plugin): any storage file the snapshot
  // created that holds blocks may hold the space the write needs.
  FullFileSystem t(sparse_storage(dir.file("diff")), nullptr);
  REQUIRE_OK(t.origin->write(pattern(4096, 3 * kChunk, 3).data(), 4096, 3 * kChunk, false));
  CHECK(t.device->refused == 1);  // one refusal, then the write once more
  check_gave_way(t, dir.file("diff"));
  // Later writes find room at once and corrupt nothing more.
  REQUIRE_OK(t.origin->write(pattern(4096, 5 * kChunk, 3).data(), 4096, 5 * kChunk, false));
  CHECK(t.device->refused == 1);
}

TEST_CASE("a zero of the origin meeting ENOSPC makes the snapshot give up its storage, then succeeds") {
  TempDir dir;
  FullFileSystem t(sparse_storage(dir.file("diff")), nullptr);
  REQUIRE_OK(t.origin->zero(3 * kChunk, 4096, false, false));
  CHECK(t.info().state == SnapshotState::corrupted);
  CHECK(blocks_of(dir.file("diff")) == 0);
  CHECK(read_origin(*t.origin, 4096, 3 * kChunk) == std::vector<uint8_t>(4096, 0));
}

TEST_CASE("an origin file on the storage's file system gives way, one on another file system does not") {
  TempDir dir;
  // The origin claims a real file, so the engine compares file systems (st_dev).
  std::unique_ptr<FileDevice> same_fs;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("origin-file"), 4096, same_fs, created));
  SUBCASE("same file system") {
    FullFileSystem t(sparse_storage(dir.file("diff")), same_fs->sharable_file());
    REQUIRE_OK(t.origin->write(pattern(4096, 3 * kChunk, 3).data(), 4096, 3 * kChunk, false));
    check_gave_way(t, dir.file("diff"));
  }
  SUBCASE("another file system") {
    const std::filesystem::path shm = "/dev/shm";
    struct stat a {
    }, b{};
    if (::stat(shm.c_str(), &a) != 0 || ::stat(dir.path().c_str(), &b) != 0 || a.st_dev == b.st_dev) {
      MESSAGE("skipped: /dev/shm is not another file system than " << dir.path());
      return;
    }
    const std::string other = (shm / ("nbdsnap-test-" + std::to_string(::getpid()) + "-origin")).string();
    std::unique_ptr<FileDevice> other_fs;
    REQUIRE_OK(FileDevice::create(other, 4096, other_fs, created));
    FullFileSystem t(sparse_storage(dir.file("diff")), other_fs->sharable_file());
    CHECK_ERRC(t.origin->write(pattern(4096, 3 * kChunk, 3).data(), 4096, 3 * kChunk, false), Errc::no_space);
    CHECK(t.info().state == SnapshotState::taken);  // not ours to give: the snapshot stays whole
    CHECK(blocks_of(dir.file("diff")) > 0);
    other_fs.reset();
    ::unlink(other.c_str());
  }
}

TEST_CASE(
    "storage given as an existing file is never emptied: the origin write fails and the snapshot stays") {
  TempDir dir;
  {
    std::unique_ptr<FileDevice> existing;
    bool created = false;
    REQUIRE_OK(FileDevice::create(dir.file("given"), 4 * MiB, existing, created));
  }
  StorageSpec spec;
  spec.path = dir.file("given");  // no size: the user's file, used as it is
  FullFileSystem t(spec, nullptr);
  CHECK_ERRC(t.origin->write(pattern(4096, 3 * kChunk, 3).data(), 4096, 3 * kChunk, false), Errc::no_space);
  CHECK(t.info().state == SnapshotState::taken);
  CHECK(blocks_of(dir.file("given")) > 0);
}

TEST_CASE("the filter's path: make_room_for_write under the write guard gives way once, then has nothing") {
  TempDir dir;
  FullFileSystem t(sparse_storage(dir.file("diff")), nullptr);
  Origin::WriteGuard guard;
  REQUIRE_OK(t.origin->begin_write(3 * kChunk, 4096, nullptr, guard));
  CHECK(t.origin->make_room_for_write(3 * kChunk, 4096, guard));
  CHECK(t.info().state == SnapshotState::corrupted);
  CHECK(blocks_of(dir.file("diff")) == 0);
  guard.release();
  Origin::WriteGuard not_entered;
  CHECK_FALSE(t.origin->make_room_for_write(3 * kChunk, 4096, not_entered));
}

TEST_CASE("a device-less origin's file identity tells the file system its writes take blocks from") {
  // The filter over nbdkit's file plugin: no device, but the file behind the export is known, so storage on
  // another file system is not given up for it (and storage on its own file system is).
  TempDir dir;
  {
    std::unique_ptr<FileDevice> file;
    bool created = false;
    REQUIRE_OK(FileDevice::create(dir.file("origin-file"), 4096, file, created));
  }
  std::string identity;
  REQUIRE_OK(FileDevice::identity_of(dir.file("origin-file"), identity));
  struct stat st {};
  REQUIRE(::stat(dir.file("origin-file").c_str(), &st) == 0);
  const OriginFileSystem known = OriginFileSystem::of(nullptr, identity);
  CHECK(known.kind == OriginFileSystem::Kind::file_system);
  CHECK(known.device == static_cast<uint64_t>(st.st_dev));
  // A device that is no regular file but names one (a loop device is its backing file: file_device.cpp).
  struct NamedDevice final : BlockDevice {
    explicit NamedDevice(std::string identity) : identity_(std::move(identity)) {}
    uint64_t size() const override { return 4096; }
    Status pread(void*, uint64_t, uint64_t) override { return Status::ok(); }
    Status pwrite(const void*, uint64_t, uint64_t, bool) override { return Status::ok(); }
    Status flush() override { return Status::ok(); }
    std::string file_identity() const override { return identity_; }
    const std::string identity_;
  };
  const NamedDevice loop(identity);
  CHECK(OriginFileSystem::of(&loop, "").device == static_cast<uint64_t>(st.st_dev));
  CHECK(OriginFileSystem::of(&loop, "").kind == OriginFileSystem::Kind::file_system);
  CHECK(OriginFileSystem::of(nullptr, "block 8:0").kind == OriginFileSystem::Kind::block_device);
  CHECK(OriginFileSystem::of(nullptr, "").kind == OriginFileSystem::Kind::unknown);
  uint64_t device = 0;
  CHECK_FALSE(FileDevice::file_system_of("block 8:0", device));
  CHECK_FALSE(FileDevice::file_system_of("file 12", device));
}
