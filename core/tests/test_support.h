// SPDX-License-Identifier: BSD-3-Clause
// test_support.h — fixtures the engine's unit tests share: temporary directories, byte patterns that say
// where they were written, engine configurations with small chunks, and waiting for events.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine.h"
#include "events.h"
#include "memory_device.h"
#include "status.h"
#include "tracker.h"
#include "units.h"

// Checks that a Status-returning expression succeeded, printing the engine's message when it did not.
#define REQUIRE_OK(expr)                                                 \
  do {                                                                   \
    const ::nbdsnap::Status status_ = (expr);                            \
    REQUIRE_MESSAGE(status_.is_ok(), #expr ": " << status_.to_string()); \
  } while (0)
#define CHECK_OK(expr)                                                 \
  do {                                                                 \
    const ::nbdsnap::Status status_ = (expr);                          \
    CHECK_MESSAGE(status_.is_ok(), #expr ": " << status_.to_string()); \
  } while (0)
// Checks that an expression failed with a given Errc.
#define CHECK_ERRC(expr, errc)                                                                       \
  do {                                                                                               \
    const ::nbdsnap::Status status_ = (expr);                                                        \
    CHECK_MESSAGE(status_.code() == (errc),                                                          \
                  #expr ": got " << status_.to_string() << ", want " << ::nbdsnap::errc_name(errc)); \
  } while (0)

namespace nbdsnap::test {

// Ends the test program with a message if it is still alive after `limit`: for tests whose failure is a hang
// (a hung call cannot be reported any other way). Stops when destroyed.
class HangWatchdog {
 public:
  HangWatchdog(std::string what, std::chrono::seconds limit) : what_(std::move(what)) {
    thread_ = std::thread([this, limit] {
      std::unique_lock lock(mutex_);
      if (!done_changed_.wait_for(lock, limit, [this] { return done_; })) {
        std::fprintf(stderr, "HANG: %s did not finish within %lld s\n", what_.c_str(),
                     static_cast<long long>(limit.count()));
        std::fflush(stderr);
        std::_Exit(3);
      }
    });
  }
  ~HangWatchdog() {
    {
      std::scoped_lock lock(mutex_);
      done_ = true;
    }
    done_changed_.notify_all();
    thread_.join();
  }
  HangWatchdog(const HangWatchdog&) = delete;
  HangWatchdog& operator=(const HangWatchdog&) = delete;

 private:
  std::string what_;
  std::mutex mutex_;
  std::condition_variable done_changed_;
  bool done_ = false;  // GUARDED_BY(mutex_)
  std::thread thread_;
};

// A fresh directory under the system's temporary directory, removed with everything in it.
class TempDir {
 public:
  // A directory under `base` (default: the temporary directory).
  explicit TempDir(const std::filesystem::path& base = std::filesystem::temp_directory_path()) {
    std::string templ = (base / "nbdsnap-test-XXXXXX").string();
    REQUIRE(mkdtemp(templ.data()) != nullptr);
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // A directory in memory (/dev/shm, where fsync costs nothing) if there is one, else in the temporary
  // directory. For tests whose time bounds check the engine's waits, not a disk's: an fsync on a file system
  // shared with other tests' writes waited over 10 s in CI (ext4 data=ordered: a commit writes their data).
  static TempDir in_memory() {
    std::error_code error;
    if (std::filesystem::is_directory("/dev/shm", error) && ::access("/dev/shm", W_OK) == 0)
      return TempDir("/dev/shm");
    return TempDir();
  }

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A sparse device that states a minimum I/O size, as a RAID block device (BLKIOMIN) or an nbdkit plugin's
// minimum block size does.
class DeviceWithMinimumIo final : public BlockDevice {
 public:
  DeviceWithMinimumIo(uint64_t size, uint64_t minimum_io) : inner_(size), minimum_io_(minimum_io) {}
  uint64_t size() const override { return inner_.size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override { return inner_.pread(buf, len, offset); }
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    return inner_.pwrite(buf, len, offset, fua);
  }
  Status flush() override { return Status::ok(); }
  uint64_t minimum_io_size() const override { return minimum_io_; }

 private:
  MemoryDevice inner_;
  const uint64_t minimum_io_;
};

// The byte that "version" v of the data holds at absolute offset o: differs between versions and offsets,
// so a read from the wrong place or the wrong time shows.
inline uint8_t pattern_byte(uint64_t offset, uint32_t version) {
  uint64_t x =
      offset * 0x9E3779B97F4A7C15ull + uint64_t{version} * 0xC2B2AE3D27D4EB4Full + 0x165667B19E3779F9ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<uint8_t>(x);
}

inline std::vector<uint8_t> pattern(uint64_t len, uint64_t offset, uint32_t version) {
  std::vector<uint8_t> out(len);
  for (uint64_t i = 0; i < len; ++i) out[i] = pattern_byte(offset + i, version);
  return out;
}

// Fills a device with version v of the pattern.
inline void fill_device(BlockDevice& device, uint32_t version) {
  constexpr uint64_t kStep = 1 << 20;
  for (uint64_t offset = 0; offset < device.size(); offset += kStep) {
    const uint64_t len = std::min(kStep, device.size() - offset);
    const auto data = pattern(len, offset, version);
    REQUIRE_OK(device.pwrite(data.data(), len, offset, false));
  }
}

// Rules that keep the minimum sizes whatever the device size, so tiny devices have many chunks.
inline SizingRules small_sizing(unsigned chunk_shift, unsigned tracking_shift = 12) {
  SizingRules rules;
  rules.chunk_minimum_shift = chunk_shift;
  rules.chunk_maximum_count_shift = 40;
  rules.tracking_block_minimum_shift = tracking_shift;
  rules.tracking_block_maximum_count = uint64_t{1} << 40;
  return rules;
}

// What the engine says of a snapshot or an origin the test made (the test stops if it does not exist).
inline SnapshotInfo snapshot_info_of(Engine& engine, const std::string& name) {
  SnapshotInfo info;
  REQUIRE_OK(engine.snapshot_info(name, info));
  return info;
}
inline OriginInfo origin_info_of(Engine& engine, const std::string& name) {
  OriginInfo info;
  REQUIRE_OK(engine.origin_info(name, info));
  return info;
}

// Difference storage as a byte range of a file or device (storage_spec.h's {path, offset, length} form).
inline StorageSpec storage_range(const std::string& path, uint64_t offset, uint64_t length) {
  StorageSpec spec;
  spec.path = path;
  spec.offset = offset;
  spec.length = length;
  return spec;
}

// The chunk size of small_config() with its default chunk_shift.
inline constexpr uint64_t kChunk = uint64_t{1} << 16;

// An engine configuration for tests: small chunks, a small buffer pool, no low-space noise.
inline EngineConfig small_config(unsigned chunk_shift = 16) {
  EngineConfig config;
  config.sizing = small_sizing(chunk_shift);
  config.chunk_buffer_budget = 1 << 20;
  config.low_space_threshold = 0;
  config.copy_io_size = 64 << 10;
  return config;
}

// Attaches a MemoryDevice filled with version `version` of the pattern; returns the device.
inline std::shared_ptr<MemoryDevice> attach_memory_origin(Engine& engine, const std::string& name,
                                                          uint64_t size, uint32_t version = 1) {
  auto device = std::make_shared<MemoryDevice>(size);
  fill_device(*device, version);
  REQUIRE_OK(engine.attach_origin(name, device, false));
  return device;
}

// Options for a snapshot of some origins with one storage file of `storage_size` bytes in `dir`.
inline SnapshotOptions snapshot_options(const std::vector<std::string>& origins, const TempDir& dir,
                                        const std::string& storage_name, uint64_t storage_size) {
  SnapshotOptions options;
  options.origins = origins;
  options.storage.push_back({dir.file(storage_name), storage_size});
  return options;
}

// Waits until an event of `type` (for `snapshot`, when given) with sequence > after is posted.
inline std::optional<Event> wait_for_event(EventLog& log, EventType type, uint64_t after,
                                           std::chrono::milliseconds timeout,
                                           const std::string& snapshot = std::string()) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {  // looks at least once, also with a zero timeout
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration::zero()));
    for (const Event& event : log.wait_after(after, left)) {
      after = std::max(after, event.sequence);
      if (event.type == type && (snapshot.empty() || event.snapshot == snapshot)) return event;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
  }
}

// Reads [offset, offset+len) of an image, requiring success.
inline std::vector<uint8_t> read_image(Image& image, uint64_t len, uint64_t offset) {
  std::vector<uint8_t> out(len);
  REQUIRE_OK(image.read(out.data(), len, offset));
  return out;
}

inline std::vector<uint8_t> read_origin(Origin& origin, uint64_t len, uint64_t offset) {
  std::vector<uint8_t> out(len);
  REQUIRE_OK(origin.read(out.data(), len, offset));
  return out;
}

// The first offset at which two buffers differ, for readable failure messages (-1 when equal).
inline int64_t first_difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  return a.size() == b.size() ? -1 : static_cast<int64_t>(n);
}

}  // namespace nbdsnap::test

namespace nbdsnap {

// Tests only: an origin's write gate (Origin keeps its tracker private to the engine), to hold it frozen as a
// take does while a test checks what waits.
struct OriginTestAccess {
  static IoGate& write_gate(Origin& origin) { return origin.tracker().gate(); }
  // Whether the origin's writes copy old chunks to a snapshot (a take switched its copy-on-write target).
  static bool copies_on_write(Origin& origin) { return origin.tracker().cow_target() != nullptr; }
  static Cbt& cbt(Origin& origin) { return origin.cbt(); }
};

}  // namespace nbdsnap
