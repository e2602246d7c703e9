// SPDX-License-Identifier: BSD-3-Clause
// cow_faults_test.cpp — failures on the copy-on-write path end in an error or a corrupted snapshot, never in
// a hang, a failed origin write or a gate left entered (ARCHITECTURE.md invariants 2 and 5).
//
// Each test runs under a HangWatchdog: before the fixes they hung for ever (a self-deadlock in the chunk map,
// a chunk left `copying` by an exception, an origin gate left entered), which only a watchdog can report.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <new>
#include <thread>

#include "chunk_buffer.h"
#include "engine.h"
#include "file_device.h"
#include "snapshot.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;
using namespace std::chrono_literals;

namespace {

// Allocation hook state: the next `chunk_allocations_to_fail` chunk buffer allocations throw, each after
// `chunk_allocation_delay_ms` (so that other writers of the chunk are waiting for it by then).
std::atomic<int> chunk_allocations_to_fail{0};
std::atomic<int> chunk_allocation_delay_ms{0};
void fail_chunk_allocations(uint64_t) {
  if (chunk_allocations_to_fail.fetch_sub(1) <= 0) {
    chunk_allocations_to_fail = 0;
    return;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(chunk_allocation_delay_ms.load()));
  throw std::bad_alloc();
}

// Installs the hook for one test and removes it whatever happens.
struct AllocationFailures {
  explicit AllocationFailures(int count, int delay_ms = 0) {
    chunk_allocations_to_fail = count;
    chunk_allocation_delay_ms = delay_ms;
    set_chunk_allocation_hook(fail_chunk_allocations);
  }
  ~AllocationFailures() { set_chunk_allocation_hook(nullptr); }
};

// An engine with one 1 MiB origin on a FaultyDevice and a taken snapshot "s" of it.
struct FaultyOrigin {
  explicit FaultyOrigin(bool writable) : engine(small_config(16)) {
    auto memory = std::make_shared<MemoryDevice>(MiB);
    fill_device(*memory, 1);
    device = std::make_shared<FaultyDevice>(memory);
    REQUIRE_OK(engine.attach_origin("disk0", device, false));
    origin = engine.find_origin("disk0");
    SnapshotOptions options = snapshot_options({"disk0"}, dir, "diff", 4 * MiB);
    options.writable = writable;
    REQUIRE_OK(engine.create_snapshot("s", options));
    REQUIRE_OK(engine.take_snapshot("s"));
    REQUIRE_OK(engine.find_image("disk0", "s", image));
  }
  TempDir dir;
  Engine engine;
  std::shared_ptr<FaultyDevice> device;
  std::shared_ptr<Origin> origin;
  std::shared_ptr<Image> image;
};

// The control operations that wait for gates, run to the end: a take of a second snapshot, destroy, detach.
void control_operations_still_return(FaultyOrigin& f) {
  REQUIRE_OK(f.engine.destroy_snapshot("s"));
  REQUIRE_OK(f.engine.create_snapshot("t", snapshot_options({"disk0"}, f.dir, "diff2", 4 * MiB)));
  REQUIRE_OK(f.engine.take_snapshot("t"));
  REQUIRE_OK(f.engine.destroy_snapshot("t"));
  REQUIRE_OK(f.engine.detach_origin("disk0", false));
}

}  // namespace

TEST_CASE(
    "a writable image write whose chunk cannot be read from the origin fails at once, corrupting the "
    "snapshot") {
  HangWatchdog watchdog("writable image write with a failing origin read", 20s);
  FaultyOrigin f(true);
  // Another thread asks for the snapshot's info all along: the info path and the chunk map must not take
  // their locks in opposite orders (TSan reports an inversion if they do).
  std::atomic<bool> stop{false};
  std::thread info([&] {
    while (!stop) {
      SnapshotInfo out;
      (void)f.engine.snapshot_info("s", out);
    }
  });
  f.device->fail_reads = true;
  const auto data = pattern(4 * KiB, 0, 7);
  CHECK_ERRC(f.image->write(data.data(), data.size(), 0), Errc::corrupted);
  stop = true;
  info.join();
  f.device->fail_reads = false;
  SnapshotInfo out;
  REQUIRE_OK(f.engine.snapshot_info("s", out));
  CHECK(out.state == SnapshotState::corrupted);
  CHECK(out.corruption_reason.find("read of the origin failed") != std::string::npos);
  std::vector<uint8_t> buf(4 * KiB);
  CHECK_ERRC(f.image->read(buf.data(), buf.size(), 0), Errc::corrupted);
  control_operations_still_return(f);
}

TEST_CASE("an allocation failure while copying a chunk corrupts the snapshot, the origin write succeeds") {
  HangWatchdog watchdog("copy-on-write with a failing chunk allocation", 20s);
  FaultyOrigin f(false);
  {
    AllocationFailures failures(1);
    const auto data = pattern(4 * KiB, 0, 2);
    CHECK_OK(f.origin->write(data.data(), data.size(), 0, false));
    CHECK(read_origin(*f.origin, 4 * KiB, 0) == data);
  }
  SnapshotInfo out;
  REQUIRE_OK(f.engine.snapshot_info("s", out));
  CHECK(out.state == SnapshotState::corrupted);
  CHECK(out.corruption_reason.find("out of memory") != std::string::npos);
  // The chunk was claimed when the allocation failed: it must be failed now, not `copying` for ever.
  std::vector<uint8_t> buf(4 * KiB);
  CHECK_ERRC(f.image->read(buf.data(), buf.size(), 0), Errc::corrupted);
  // Later writes of the same and other chunks go on.
  const auto more = pattern(64 * KiB, 0, 3);
  CHECK_OK(f.origin->write(more.data(), more.size(), 0, false));
  CHECK_OK(f.origin->write(more.data(), more.size(), 512 * KiB, false));
  control_operations_still_return(f);
}

TEST_CASE("an allocation failure on a writable image write leaves the chunk settled for the next writers") {
  HangWatchdog watchdog("writable image write with a failing chunk allocation", 20s);
  FaultyOrigin f(true);
  {
    AllocationFailures failures(1);
    const auto data = pattern(4 * KiB, 0, 2);
    CHECK_ERRC(f.image->write(data.data(), data.size(), 0), Errc::corrupted);
  }
  const auto data = pattern(4 * KiB, 0, 4);
  CHECK_OK(f.origin->write(data.data(), data.size(), 0, false));
  CHECK_ERRC(f.image->write(data.data(), data.size(), 0), Errc::corrupted);
  control_operations_still_return(f);
}

TEST_CASE("writers waiting for a chunk whose copy fails are released, and their origin writes succeed") {
  HangWatchdog watchdog("writers of one chunk with a failing copy", 20s);
  FaultyOrigin f(false);
  AllocationFailures failures(1, 300);  // the first writer claims the chunk and fails 300 ms later
  std::vector<std::thread> writers;
  std::atomic<int> succeeded{0};
  for (int i = 0; i < 8; ++i) {
    writers.emplace_back([&, i] {
      const auto data = pattern(512, static_cast<uint64_t>(i) * 512, 10 + static_cast<uint32_t>(i));
      if (f.origin->write(data.data(), data.size(), static_cast<uint64_t>(i) * 512, false).is_ok())
        ++succeeded;
    });
  }
  for (auto& writer : writers) writer.join();
  CHECK(succeeded == 8);
  SnapshotInfo out;
  REQUIRE_OK(f.engine.snapshot_info("s", out));
  CHECK(out.state == SnapshotState::corrupted);
  control_operations_still_return(f);
}

TEST_CASE("a detached origin refuses every request of the connections that still hold it") {
  FaultyOrigin f(false);
  REQUIRE_OK(f.engine.destroy_snapshot("s"));
  REQUIRE_OK(f.engine.detach_origin("disk0", false));
  const auto data = pattern(4 * KiB, 0, 2);
  CHECK_ERRC(f.origin->write(data.data(), data.size(), 0, false), Errc::io_error);
  CHECK_ERRC(f.origin->zero(0, 4 * KiB, false, false), Errc::io_error);
  CHECK_ERRC(f.origin->trim(0, 4 * KiB, false), Errc::io_error);
  std::vector<uint8_t> buf(4 * KiB);
  CHECK_ERRC(f.origin->read(buf.data(), buf.size(), 0), Errc::io_error);
  CHECK_ERRC(f.origin->flush(), Errc::io_error);
  Origin::WriteGuard guard;
  const Status status = f.origin->begin_write(0, 4 * KiB, nullptr, guard);
  CHECK(status.code() == Errc::io_error);
  CHECK(status.message().find("detached") != std::string::npos);
  CHECK(f.device->size() == MiB);
  std::vector<uint8_t> disk(4 * KiB);
  REQUIRE_OK(f.device->pread(disk.data(), disk.size(), 0));
  CHECK(disk == pattern(4 * KiB, 0, 1));  // nothing reached the disk
}

TEST_CASE(
    "a detached origin lets go of its file at once, so it can be attached again while clients hold it") {
  TempDir dir;
  const std::string path = dir.file("disk.img");
  {
    std::unique_ptr<FileDevice> file;
    bool created = false;
    REQUIRE_OK(FileDevice::create(path, MiB, file, created));
  }
  Engine engine(small_config(16));
  std::unique_ptr<FileDevice> first;
  REQUIRE_OK(FileDevice::open(path, false, first));
  REQUIRE_OK(engine.attach_origin("d", std::move(first), false));
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"d"}, dir, "diff", 2 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  std::shared_ptr<Origin> held = engine.find_origin("d");  // a connection's reference
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("d", "s", image));  // and an image client's
  REQUIRE_OK(engine.detach_origin("d", true));
  std::unique_ptr<FileDevice> again;
  REQUIRE_OK(FileDevice::open(path, false, again));  // the file's lock went with the detach
  REQUIRE_OK(engine.attach_origin("d", std::move(again), false));
  std::vector<uint8_t> buf(4 * KiB);
  CHECK_ERRC(held->read(buf.data(), buf.size(), 0), Errc::io_error);
  CHECK_ERRC(held->write(buf.data(), buf.size(), 0, false), Errc::io_error);
  CHECK_ERRC(image->read(buf.data(), buf.size(), 0), Errc::not_found);
  CHECK_OK(engine.find_origin("d")->write(buf.data(), buf.size(), 0, false));
}

namespace {
// Difference storage whose writes wait until released: chunks copied meanwhile stay in memory.
class HeldWritesDevice final : public BlockDevice {
 public:
  explicit HeldWritesDevice(std::shared_ptr<BlockDevice> inner) : inner_(std::move(inner)) {}
  uint64_t size() const override { return inner_->size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override { return inner_->pread(buf, len, offset); }
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    while (held.load()) std::this_thread::sleep_for(1ms);
    return inner_->pwrite(buf, len, offset, fua);
  }
  Status flush() override { return inner_->flush(); }
  static inline std::atomic<bool> held{false};

 private:
  std::shared_ptr<BlockDevice> inner_;
};
}  // namespace

TEST_CASE("destroying a snapshot frees its buffered chunks even while a client still holds its image") {
  HangWatchdog watchdog("destroy with buffered chunks", 20s);
  TempDir dir;
  EngineConfig config = small_config(16);
  config.chunk_buffer_budget = 4 * MiB;
  config.wrap_storage_device = [](std::shared_ptr<BlockDevice> file) -> std::shared_ptr<BlockDevice> {
    return std::make_shared<HeldWritesDevice>(std::move(file));
  };
  Engine engine(config);
  auto origin_device = attach_memory_origin(engine, "d", MiB);
  auto origin = engine.find_origin("d");
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"d"}, dir, "diff", 4 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  std::shared_ptr<Image> image;
  REQUIRE_OK(engine.find_image("d", "s", image));  // a client that keeps its image open
  HeldWritesDevice::held = true;
  const auto data = pattern(MiB, 0, 2);
  REQUIRE_OK(origin->write(data.data(), data.size(), 0, false));  // 16 chunks copied into memory
  CHECK(engine.chunk_buffer_bytes() > 0);
  std::thread release([] {
    std::this_thread::sleep_for(100ms);
    HeldWritesDevice::held = false;
  });
  REQUIRE_OK(engine.destroy_snapshot("s"));
  release.join();
  CHECK(engine.chunk_buffer_bytes() == 0);
  std::vector<uint8_t> buf(4 * KiB);
  CHECK_ERRC(image->read(buf.data(), buf.size(), 0), Errc::not_found);
}
