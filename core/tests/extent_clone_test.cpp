// SPDX-License-Identifier: BSD-3-Clause
// extent_clone_test.cpp — first touch by sharing extents (core/extent_clone.h): when chunks are cloned, when
// a pair falls back to copying for good, and that a clone failing otherwise is a failed copy (the snapshot is
// corrupted, the origin write succeeds). The file systems the tests run on need not share extents: a hook
// stands in for FICLONERANGE, emulating a clone with pread/pwrite or failing with a chosen errno.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <thread>
#include <vector>

#include "engine.h"
#include "extent_clone.h"
#include "file_device.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

// What the hook does and saw. One test at a time installs it (ClonesBy below).
std::atomic<int> clone_errno{0};  // 0: emulate the clone by copying bytes; else fail with this errno
std::atomic<int> clones_tried{0};
std::atomic<bool> unaligned_clone_seen{false};

int emulated_clone(int src_fd, uint64_t src_offset, int dst_fd, uint64_t dst_offset, uint64_t len) {
  ++clones_tried;
  if (src_offset % 4096 != 0 || dst_offset % 4096 != 0 || len % 4096 != 0) unaligned_clone_seen = true;
  if (const int error = clone_errno.load()) return error;
  std::vector<uint8_t> bytes(len);
  if (::pread(src_fd, bytes.data(), len, static_cast<off_t>(src_offset)) != static_cast<ssize_t>(len))
    return EIO;
  if (::pwrite(dst_fd, bytes.data(), len, static_cast<off_t>(dst_offset)) != static_cast<ssize_t>(len))
    return EIO;
  return 0;
}

// Installs the hook for one test with the given behaviour and removes it whatever happens.
struct ClonesBy {
  explicit ClonesBy(int error) {
    clone_errno = error;
    clones_tried = 0;
    unaligned_clone_seen = false;
    set_extent_clone_hook(emulated_clone);
  }
  ~ClonesBy() { set_extent_clone_hook(nullptr); }
};

// An engine over a file origin of `size` bytes (pattern version 1) with a taken snapshot "s" whose storage is
// one file; the log lines the engine writes are kept.
struct FileOrigin {
  explicit FileOrigin(uint64_t size, ReflinkMode mode = ReflinkMode::automatic, bool file_origin = true)
      : engine(config(mode)) {
    std::shared_ptr<BlockDevice> device;
    if (file_origin) {
      std::unique_ptr<FileDevice> file;
      bool created = false;
      REQUIRE_OK(FileDevice::create(dir.file("origin.raw"), size, file, created));
      device = std::move(file);
    } else {
      device = std::make_shared<MemoryDevice>(size);
    }
    fill_device(*device, 1);
    REQUIRE_OK(engine.attach_origin("disk0", device, false));
    origin = engine.find_origin("disk0");
    REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 4 * MiB)));
    REQUIRE_OK(engine.take_snapshot("s"));
    REQUIRE_OK(engine.find_image("disk0", "s", image));
  }
  EngineConfig config(ReflinkMode mode) {
    EngineConfig c = small_config(16);
    c.reflink = mode;
    c.log_info = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mutex);
      log.push_back(line);
    };
    return c;
  }
  std::vector<std::string> log_lines() {
    std::lock_guard<std::mutex> lock(log_mutex);
    return log;
  }
  void write_version(uint64_t len, uint64_t offset, uint32_t version) {
    const auto data = pattern(len, offset, version);
    REQUIRE_OK(origin->write(data.data(), len, offset, false));
  }
  void check_image_is_take_time(uint64_t size) {
    CHECK(first_difference(read_image(*image, size, 0), pattern(size, 0, 1)) == -1);
  }

  TempDir dir;
  std::mutex log_mutex;
  std::vector<std::string> log;
  Engine engine;
  std::shared_ptr<Origin> origin;
  std::shared_ptr<Image> image;
};

size_t lines_containing(const std::vector<std::string>& lines, const std::string& text) {
  size_t n = 0;
  for (const std::string& line : lines) n += line.find(text) != std::string::npos;
  return n;
}

}  // namespace

TEST_CASE("reflink mode parses auto and off and names the option otherwise") {
  ReflinkMode mode = ReflinkMode::off;
  CHECK_OK(parse_reflink_mode("auto", "--reflink", mode));
  CHECK(mode == ReflinkMode::automatic);
  CHECK_OK(parse_reflink_mode("off", "--reflink", mode));
  CHECK(mode == ReflinkMode::off);
  const Status bad = parse_reflink_mode("on", "--reflink", mode);
  CHECK(bad.code() == Errc::invalid_argument);
  CHECK(bad.message().find("--reflink 'on' is not a reflink mode") != std::string::npos);
  CHECK(std::string(reflink_mode_name(ReflinkMode::automatic)) == "auto");
}

TEST_CASE("clone errnos that mean the pair cannot share extents are told apart from failures") {
  for (int e : {EXDEV, EOPNOTSUPP, ENOTTY, EINVAL, EBADF}) CHECK(clone_unsupported(e));
  for (int e : {EIO, ENOSPC, EPERM, EDQUOT, ENOMEM}) CHECK_FALSE(clone_unsupported(e));
}

TEST_CASE("chunks of a file origin are cloned into storage and the image keeps take-time data") {
  ClonesBy clones(0);
  FileOrigin f(1 * MiB);
  f.write_version(4 * KiB, 3 * kChunk + 100, 2);  // one chunk, partly
  f.write_version(3 * kChunk, 6 * kChunk, 2);     // three whole chunks
  CHECK(clones_tried == 4);
  CHECK_FALSE(unaligned_clone_seen);
  f.check_image_is_take_time(1 * MiB);
  CHECK(first_difference(read_origin(*f.origin, 4 * KiB, 3 * kChunk + 100),
                         pattern(4 * KiB, 3 * kChunk + 100, 2)) == -1);
  const auto lines = f.log_lines();
  CHECK(lines.size() == 1);
  CHECK(lines_containing(lines, "by sharing extents") == 1);
  SnapshotInfo info;
  REQUIRE_OK(f.engine.snapshot_info("s", info));
  CHECK(info.state == SnapshotState::taken);
}

TEST_CASE("a pair that cannot share extents copies for good after one try and logs it once") {
  for (int error : {EXDEV, EOPNOTSUPP, EINVAL}) {
    CAPTURE(error);
    ClonesBy clones(error);
    FileOrigin f(1 * MiB);
    for (uint64_t chunk = 0; chunk < 8; ++chunk) f.write_version(KiB, chunk * kChunk, 2);
    CHECK(clones_tried == 1);
    f.check_image_is_take_time(1 * MiB);
    const auto lines = f.log_lines();
    CHECK(lines.size() == 1);
    CHECK(lines_containing(lines, "cannot share extents") == 1);
    SnapshotInfo info;
    REQUIRE_OK(f.engine.snapshot_info("s", info));
    CHECK(info.state == SnapshotState::taken);
  }
}

TEST_CASE("a clone failing with another errno corrupts the snapshot and the origin write succeeds") {
  for (int error : {EIO, ENOSPC, EPERM}) {
    CAPTURE(error);
    ClonesBy clones(error);
    FileOrigin f(1 * MiB);
    const uint64_t after = f.engine.events().last_sequence();
    f.write_version(8 * KiB, 2 * kChunk, 2);  // REQUIRE_OK inside: the origin write succeeded
    CHECK(first_difference(read_origin(*f.origin, 8 * KiB, 2 * kChunk), pattern(8 * KiB, 2 * kChunk, 2)) ==
          -1);
    const auto event =
        wait_for_event(f.engine.events(), EventType::corrupted, after, std::chrono::seconds(5));
    REQUIRE(event.has_value());
    CHECK(event->error_code == error);
    CHECK(event->reason.find("sharing extents") != std::string::npos);
    std::vector<uint8_t> buf(4 * KiB);
    CHECK_ERRC(f.image->read(buf.data(), buf.size(), 2 * kChunk), Errc::corrupted);
  }
}

TEST_CASE("a clone that works after others failed keeps deciding per storage area: copying stays for good") {
  ClonesBy clones(0);
  FileOrigin f(1 * MiB);
  f.write_version(KiB, 0, 2);
  CHECK(clones_tried == 1);
  clone_errno = EXDEV;  // the same pair refuses later (a file system that changed its mind): copy from now on
  f.write_version(KiB, kChunk, 2);
  clone_errno = 0;
  f.write_version(KiB, 2 * kChunk, 2);
  CHECK(clones_tried == 2);
  f.check_image_is_take_time(1 * MiB);
  CHECK(lines_containing(f.log_lines(), "cannot share extents") == 1);
}

TEST_CASE("reflink off and origins without a file copy and never try a clone") {
  ClonesBy clones(0);
  SUBCASE("reflink off") {
    FileOrigin f(1 * MiB, ReflinkMode::off);
    for (uint64_t chunk = 0; chunk < 4; ++chunk) f.write_version(KiB, chunk * kChunk, 2);
    f.check_image_is_take_time(1 * MiB);
    CHECK(lines_containing(f.log_lines(), "reflink is off") == 1);
  }
  SUBCASE("an origin with no file of its own") {
    FileOrigin f(1 * MiB, ReflinkMode::automatic, false);
    for (uint64_t chunk = 0; chunk < 4; ++chunk) f.write_version(KiB, chunk * kChunk, 2);
    f.check_image_is_take_time(1 * MiB);
    CHECK(lines_containing(f.log_lines(), "not a regular file") == 1);
  }
  CHECK(clones_tried == 0);
}

TEST_CASE("an origin's partial last chunk is copied and the slots after it stay aligned for cloning") {
  ClonesBy clones(0);
  const uint64_t size = 4 * kChunk + 1000;  // the last chunk holds 1000 bytes
  FileOrigin f(size);
  f.write_version(100, 4 * kChunk, 2);  // the partial chunk first: copied, its slot rounded up to a block
  CHECK(clones_tried == 0);
  f.write_version(KiB, kChunk, 2);  // cloned into an aligned slot
  CHECK(clones_tried == 1);
  CHECK_FALSE(unaligned_clone_seen);
  f.check_image_is_take_time(size);
  CHECK(lines_containing(f.log_lines(), "by sharing extents") == 1);
}

TEST_CASE("without a clone hook, files on a file system without sharing are copied (the real ioctl)") {
  // The test directory's file system (ext4, tmpfs) refuses FICLONERANGE; on XFS/btrfs it clones. Either way
  // the image keeps take-time data.
  FileOrigin f(1 * MiB);
  for (uint64_t chunk = 0; chunk < 6; ++chunk) f.write_version(3 * KiB, chunk * kChunk + 5, 2);
  f.check_image_is_take_time(1 * MiB);
  SnapshotInfo info;
  REQUIRE_OK(f.engine.snapshot_info("s", info));
  CHECK(info.state == SnapshotState::taken);
  CHECK(f.log_lines().size() == 1);
}

TEST_CASE("writers racing on first touches decide once and every chunk keeps its take-time data") {
  HangWatchdog watchdog("writers racing on first touches", std::chrono::seconds(60));
  for (int error : {0, EXDEV}) {
    CAPTURE(error);
    ClonesBy clones(error);
    FileOrigin f(2 * MiB);
    std::vector<std::thread> writers;
    std::atomic<int> failed_writes{0};
    for (int w = 0; w < 4; ++w) {
      writers.emplace_back([&f, &failed_writes, w] {
        // Each writer touches every chunk, in its own order, so first touches of one chunk race too.
        for (uint64_t i = 0; i < 32; ++i) {
          const uint64_t chunk = (i * 7 + static_cast<uint64_t>(w) * 11) % 32;
          const auto data = pattern(KiB, chunk * kChunk + static_cast<uint64_t>(w) * KiB, 2);
          if (!f.origin->write(data.data(), KiB, chunk * kChunk + static_cast<uint64_t>(w) * KiB, false))
            ++failed_writes;
        }
      });
    }
    for (auto& t : writers) t.join();
    CHECK(failed_writes == 0);
    f.check_image_is_take_time(2 * MiB);
    CHECK(f.log_lines().size() == 1);
    if (error == 0) {
      CHECK(clones_tried == 32);
    } else {
      CHECK(clones_tried >= 1);
      CHECK(clones_tried <= 4);  // at most the writers that raced on the undecided pair
    }
  }
}
