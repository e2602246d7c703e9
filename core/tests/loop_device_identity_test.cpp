// SPDX-License-Identifier: BSD-3-Clause
// loop_device_identity_test.cpp — a loop device is its backing file: the same identity by path and when open,
// so the engine refuses a file and a loop device over it as two origins, or as an origin and difference
// storage, in either order. Needs root and losetup(8); skipped otherwise.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "disk_use.h"
#include "file_device.h"
#include "served_origin_files.h"
#include "test_loop_device.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

std::string identity_for_loop_test(const std::string& path) {
  std::string identity;
  REQUIRE_OK(FileDevice::identity_of(path, identity));
  return identity;
}

std::shared_ptr<BlockDevice> open_for_loop_test(const std::string& path) {
  std::unique_ptr<FileDevice> device;
  REQUIRE_OK(FileDevice::open(path, false, device));
  return std::shared_ptr<BlockDevice>(std::move(device));
}

// Opens `path` as nbdsnapd opens an origin and attaches it: the open's refusal (its lock, or the lock on a
// loop device's backing file, meeting this process's own) or the engine's.
Status attach_for_loop_test(Engine& engine, const std::string& name, const std::string& path) {
  std::unique_ptr<FileDevice> device;
  if (Status s = FileDevice::open(path, false, device); !s) return s;
  return engine.attach_origin(name, std::shared_ptr<BlockDevice>(std::move(device)), false);
}

// The status of opening `path` (read-only or read-write) as an origin, the device closed again at once.
Status open_status(const std::string& path, bool read_only) {
  std::unique_ptr<FileDevice> device;
  return FileDevice::open(path, read_only, device);
}

// How many descriptors this process has open.
size_t open_descriptor_count() {
  size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
  return count;
}

// A file of 4 MiB in dir, made with FileDevice::create and closed again.
std::string make_loop_test_file(const TempDir& dir, const std::string& name) {
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file(name), 4 * MiB, device, created));
  return dir.file(name);
}

// A 4 MiB file in a temporary directory with a loop device over all of it (`loop`) and one that starts
// 1 MiB in (`offset`), both detached at the end. ready() is false, with a message, where loop devices cannot
// be set up: the test then skips.
struct LoopedFile {
  explicit LoopedFile(const std::string& name)
      : file(make_loop_test_file(dir, name)), loop(file), offset(file, MiB) {}
  bool ready() const {
    if (loop.path().empty()) {
      MESSAGE("skipped: no loop device (needs root and losetup)");
      return false;
    }
    REQUIRE_FALSE(offset.path().empty());
    return true;
  }
  TempDir dir;
  const std::string file;
  const LoopDevice loop;
  const LoopDevice offset;
};

}  // namespace

TEST_CASE("a disk at another starting point overlaps every use of it, at the same one, only its bytes") {
  const DiskUse whole_loop{"file 2049:12", 0, 0, "origin 'x'"};
  const DiskUse first_mib{"file 2049:12", 0, MiB, "storage"};
  const DiskUse offset_loop_tail{"file 2049:12 at 4096", 3 * MiB, MiB, "storage"};
  const DiskUse offset_loop_head{"file 2049:12 at 4096", 0, MiB, "storage"};
  CHECK(whole_loop.overlaps(first_mib));
  CHECK(offset_loop_tail.overlaps(first_mib));  // other coordinates: the whole file counts
  CHECK(first_mib.overlaps(offset_loop_tail));
  CHECK_FALSE(offset_loop_tail.overlaps(offset_loop_head));  // one loop device: ranges compare
  CHECK_FALSE(DiskUse({"file 2049:13 at 4096", 0, 0, ""}).overlaps(first_mib));
}

TEST_CASE("a loop device has its backing file's identity, by path and open, however many loop over it") {
  const LoopedFile t("disk.raw");
  if (!t.ready()) return;
  const std::string& file = t.file;
  const LoopDevice& loop = t.loop;
  LoopDevice second(file);
  REQUIRE_FALSE(second.path().empty());
  const std::string identity = identity_for_loop_test(file);
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK(identity == "file " + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
  CHECK(identity_for_loop_test(loop.path()) == identity);  // lo_device decoded to the st_dev stat shows
  CHECK(identity_for_loop_test(second.path()) == identity);
  CHECK(open_for_loop_test(loop.path())->file_identity() == identity);
  CHECK(open_for_loop_test(file)->file_identity() == identity);

  // A loop device that starts inside its file: the file's identity at that offset, the same by path and open.
  const LoopDevice& offset = t.offset;
  CHECK(identity_for_loop_test(offset.path()) == identity + " at " + std::to_string(MiB));
  CHECK(open_for_loop_test(offset.path())->file_identity() == identity + " at " + std::to_string(MiB));

  // A descriptor tells the same, from the kernel's cached attributes (FileDevice::identity_of_descriptor).
  for (const auto& [path, expected] : {std::pair{file, identity}, std::pair{loop.path(), identity},
                                       std::pair{offset.path(), identity + " at " + std::to_string(MiB)}}) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    std::string by_descriptor;
    CHECK(FileDevice::identity_of_descriptor(fd, by_descriptor));
    CHECK(by_descriptor == expected);
    ::close(fd);
    CHECK_FALSE(FileDevice::identity_of_descriptor(fd, by_descriptor));  // closed
  }
}

TEST_CASE("a file and a loop device over it are never two origins, in either order") {
  const LoopedFile t("disk.raw");
  if (!t.ready()) return;
  const std::string& file = t.file;
  const LoopDevice& loop = t.loop;
  const LoopDevice& offset = t.offset;
  {
    Engine engine(small_config());
    REQUIRE_OK(engine.attach_origin("o", open_for_loop_test(file), false));
    CHECK_ERRC(attach_for_loop_test(engine, "x", loop.path()), Errc::already_exists);
    CHECK_ERRC(attach_for_loop_test(engine, "y", offset.path()), Errc::already_exists);
  }
  {
    Engine engine(small_config());
    REQUIRE_OK(engine.attach_origin("x", open_for_loop_test(loop.path()), false));
    CHECK_ERRC(attach_for_loop_test(engine, "o", file), Errc::already_exists);
  }
  {
    Engine engine(small_config());
    REQUIRE_OK(engine.attach_origin("y", open_for_loop_test(offset.path()), false));
    CHECK_ERRC(attach_for_loop_test(engine, "o", file), Errc::already_exists);
  }
}

TEST_CASE("a loop device over an origin's file is never its storage, nor the file a loop origin's storage") {
  const LoopedFile t("disk.raw");
  if (!t.ready()) return;
  const TempDir& dir = t.dir;
  const std::string& file = t.file;
  const LoopDevice& loop = t.loop;
  const LoopDevice& offset = t.offset;
  {
    Engine engine(small_config());
    REQUIRE_OK(engine.attach_origin("o", open_for_loop_test(file), false));
    CHECK_ERRC(engine.create_snapshot("t", {{"o"}, {storage_range(loop.path(), 2 * MiB, 2 * MiB)}, 0, false}),
               Errc::already_exists);
    CHECK_ERRC(engine.create_snapshot("t", {{"o"}, {storage_range(offset.path(), MiB, MiB)}, 0, false}),
               Errc::already_exists);
    REQUIRE_OK(engine.create_snapshot("t", {{"o"}, {{dir.file("t.diff"), 4 * MiB}}, 0, false}));
    CHECK_ERRC(engine.append_storage("t", storage_range(loop.path(), 2 * MiB, MiB)), Errc::already_exists);
  }
  {
    Engine engine(small_config());
    REQUIRE_OK(engine.attach_origin("x", open_for_loop_test(loop.path()), false));
    CHECK_ERRC(engine.create_snapshot("t", {{"x"}, {storage_range(file, 2 * MiB, 2 * MiB)}, 0, false}),
               Errc::already_exists);
  }
  {  // storage of two snapshots: the same bytes through the file and through an offset loop device
    Engine engine(small_config());
    REQUIRE_OK(engine.attach_origin("p", open_for_loop_test(make_loop_test_file(dir, "p.raw")), false));
    REQUIRE_OK(engine.attach_origin("q", open_for_loop_test(make_loop_test_file(dir, "q.raw")), false));
    REQUIRE_OK(engine.create_snapshot("a", {{"p"}, {storage_range(file, MiB, MiB)}, 0, false}));
    CHECK_ERRC(engine.create_snapshot("b", {{"q"}, {storage_range(offset.path(), 0, MiB)}, 0, false}),
               Errc::already_exists);
    // A loop device at byte 0 shares its file's byte ranges: other bytes of the file stay usable.
    CHECK_OK(engine.create_snapshot("c", {{"q"}, {storage_range(loop.path(), 2 * MiB, MiB)}, 0, false}));
  }
}

TEST_CASE("a loop device over a file the nbdkit plugin serves is refused as storage") {
  const LoopedFile t("served.raw");
  if (!t.ready()) return;
  ServedOriginFiles served;
  served.add_file(t.file, "file=");
  CHECK_ERRC(served.check_storage(t.loop.path()), Errc::already_exists);
  CHECK_ERRC(served.check_storage(t.offset.path()), Errc::already_exists);
}

TEST_CASE("a loop device over a loop device over a file is that file: never a second origin or its storage") {
  const LoopedFile t("o.img");
  if (!t.ready()) return;
  const std::string& file = t.file;
  const LoopDevice outer(t.loop.path());
  const LoopDevice outer_offset(t.loop.path(), MiB);
  const LoopDevice outer_of_offset(t.offset.path(), MiB);
  REQUIRE_FALSE(outer.path().empty());
  REQUIRE_FALSE(outer_offset.path().empty());
  REQUIRE_FALSE(outer_of_offset.path().empty());
  const std::string identity = identity_for_loop_test(file);
  CHECK(identity_for_loop_test(outer.path()) == identity);
  CHECK(open_for_loop_test(outer.path())->file_identity() == identity);
  // Offsets add up along the chain: 1 MiB into the loop device that is the file.
  CHECK(identity_for_loop_test(outer_offset.path()) == identity + " at 1048576");
  CHECK(identity_for_loop_test(outer_of_offset.path()) == identity + " at 2097152");

  Engine engine(small_config());
  REQUIRE_OK(engine.attach_origin("o", open_for_loop_test(file), false));
  for (const std::string& path : {outer.path(), outer_offset.path(), outer_of_offset.path()})
    CHECK_ERRC(attach_for_loop_test(engine, "x", path), Errc::already_exists);
  SnapshotOptions options;
  options.origins = {"o"};
  options.storage = {storage_range(outer.path(), 0, 2 * MiB)};
  CHECK_ERRC(engine.create_snapshot("s", options), Errc::already_exists);
}

TEST_CASE(
    "a loop device's backing file is locked as long as the device is open, all of it, in either order") {
  const LoopedFile t("disk.raw");
  if (!t.ready()) return;
  const size_t descriptors = open_descriptor_count();
  for (const std::string& device : {t.loop.path(), t.offset.path()}) {
    CAPTURE(device);
    {
      std::unique_ptr<FileDevice> loop;
      REQUIRE_OK(FileDevice::open(device, false, loop));
      CHECK_ERRC(open_status(t.file, false), Errc::already_exists);  // OFD locks meet inside one process too
      CHECK_ERRC(open_status(t.file, true), Errc::already_exists);
    }
    CHECK_OK(open_status(t.file, false));  // closed: free again
    {
      std::unique_ptr<FileDevice> file;
      REQUIRE_OK(FileDevice::open(t.file, false, file));
      CHECK_ERRC(open_status(device, false), Errc::already_exists);
      CHECK_ERRC(open_status(device, true), Errc::already_exists);
    }
    CHECK_OK(open_status(device, false));
  }
  CHECK(open_descriptor_count() == descriptors);
}

TEST_CASE(
    "a read-only loop device and its read-only backing file share it, and a writer of either is refused") {
  const LoopedFile t("disk.raw");
  if (!t.ready()) return;
  std::unique_ptr<FileDevice> loop, file;
  REQUIRE_OK(FileDevice::open(t.loop.path(), true, loop));
  REQUIRE_OK(FileDevice::open(t.file, true, file));
  CHECK_ERRC(open_status(t.file, false), Errc::already_exists);
  loop.reset();
  CHECK_ERRC(open_status(t.loop.path(), false), Errc::already_exists);
}

TEST_CASE(
    "the file behind a loop device is found and locked after a rename, and opens unlocked once deleted") {
  const LoopedFile t("disk.raw");
  if (!t.ready()) return;
  const std::string renamed = t.dir.file("renamed.raw");
  REQUIRE(::rename(t.file.c_str(), renamed.c_str()) == 0);
  {
    std::unique_ptr<FileDevice> loop;
    REQUIRE_OK(FileDevice::open(t.loop.path(), false, loop));
    CHECK_ERRC(open_status(renamed, false), Errc::already_exists);
  }
  REQUIRE(::unlink(renamed.c_str()) == 0);
  CHECK_OK(open_status(t.loop.path(), false));
}
